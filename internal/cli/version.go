package cli

import (
	"context"
	"fmt"
	"runtime"

	"github.com/prometheus/common/version"
	"github.com/spf13/cobra"
)

// versionInfo is what `version -o json|yaml` prints: flagwarden_build_info's labels.
type versionInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"build_user"`
	BuildDate string `json:"build_date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// newVersionCmd prints what flagwarden_build_info exports: version, revision, branch,
// build date, Go version and platform (also `flagwarden --version`).
func newVersionCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version [-o table|json|yaml]",
		Short: "print the version",
		Args:  noArgs,
	}
	out := outputFlags(cmd, cmd.Flags())
	cmd.RunE = runBody(func(context.Context, []string) int {
		format, err := out.Format()
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden version: %v\n", err)
			return 2
		}
		if structured(format) {
			info := versionInfo{Version: version.Version, Revision: version.GetRevision(), Branch: version.Branch,
				BuildUser: version.BuildUser, BuildDate: version.BuildDate, GoVersion: version.GoVersion,
				Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if err := writeData(env.Stdout, format, info); err != nil {
				fmt.Fprintf(env.Stderr, "flagwarden version: %v\n", err)
				return 1
			}
			return 0
		}
		fmt.Fprintln(env.Stdout, version.Print("flagwarden"))
		return 0
	})
	return cmd
}
