package kubernetes

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/config"
)

// No container engine runs where the tests do, so the Dockerfile is checked statically:
// its stages, what the runtime stage runs and as whom, and that it agrees with the
// Deployment.

// instruction is one Dockerfile instruction with continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY…
	args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	image, name string
	body        []instruction
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var (
		stages  []stage
		pending string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line = strings.TrimSpace(pending + line)
		pending = ""
		if line == "" {
			continue
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			st := stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		require.NotEmpty(t, stages, "%s before the first FROM", in.cmd)
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	require.NoError(t, sc.Err())
	require.Empty(t, pending, "the Dockerfile ends inside a continued line")
	return stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func (s stage) last(t *testing.T, cmd string) string {
	t.Helper()
	all := s.all(cmd)
	require.NotEmpty(t, all, "stage %q has no %s", s.name, cmd)
	return all[len(all)-1]
}

// execForm parses a JSON-array instruction argument (the exec form).
func execForm(t *testing.T, cmd, args string) []string {
	t.Helper()
	var out []string
	require.NoError(t, json.Unmarshal([]byte(args), &out), "%s must use the exec form (a JSON array) so signals reach flagwarden: %s", cmd, args)
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	require.GreaterOrEqual(t, len(stages), 2, "a multi-stage build")
	build, runtime := stages[0], stages[len(stages)-1]
	require.NotEmpty(t, build.name, "the build stage is named for COPY --from")

	// Build: a static binary of the flagwarden command with a toolchain at least as new
	// as go.mod asks for.
	m := regexp.MustCompile(`^golang:(\d+\.\d+)`).FindStringSubmatch(build.image)
	require.NotNil(t, m, "build stage image %q is not a golang image", build.image)
	modData, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(modData)
	require.NotNil(t, goLine, "go.mod has no go directive")
	require.Equal(t, string(goLine[1]), m[1], "the builder's Go must be the release go.mod names")
	var goBuild string
	for _, run := range build.all("RUN") {
		if strings.Contains(run, "go build") {
			goBuild = run
		}
	}
	require.NotEmpty(t, goBuild, "the build stage runs go build")
	require.Contains(t, goBuild, "CGO_ENABLED=0", "a static binary")
	require.Contains(t, goBuild, "./cmd/flagwarden")
	require.Contains(t, goBuild, "-X github.com/prometheus/common/version.Version=${VERSION}", "the version is stamped")
	require.Contains(t, goBuild, "-X github.com/prometheus/common/version.Revision=${REVISION}", "the revision is stamped")
	require.Contains(t, build.all("ARG"), "REVISION=unknown", "the revision is a build argument")
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(goBuild)
	require.NotNil(t, out, "go build names its output with -o")

	// Runtime: not the toolchain image, the binary copied from the build stage.
	require.NotContains(t, runtime.image, "golang", "the runtime image must not carry the toolchain")
	var binary string
	for _, cp := range runtime.all("COPY") {
		f := strings.Fields(cp)
		if slices.Contains(f, "--from="+build.name) && slices.Contains(f, out[1]) {
			binary = f[len(f)-1]
		}
	}
	require.NotEmpty(t, binary, "the runtime stage copies %s from stage %s", out[1], build.name)

	// As a fixed non-root uid, the one the Deployment's runAsUser names.
	user := runtime.last(t, "USER")
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.Atoi(uid)
	require.NoError(t, err, "USER must be numeric for runAsNonRoot to verify it, got %q", user)
	require.NotZero(t, n, "USER must not be root")
	o := loadObjects(t)
	require.EqualValues(t, n, *o.deployment.Spec.Template.Spec.SecurityContext.RunAsUser)

	// `flagwarden serve` with --config, which the Deployment's args replace in kind.
	entry := execForm(t, "ENTRYPOINT", runtime.last(t, "ENTRYPOINT"))
	require.Equal(t, []string{binary, "serve"}, entry)
	cmd := execForm(t, "CMD", runtime.last(t, "CMD"))
	require.Equal(t, o.container(t).Args, cmd, "the image's default args and the Deployment's agree")

	// It listens on all interfaces on the exposed port, through a real config variable.
	var listen string
	for _, env := range runtime.all("ENV") {
		if v, ok := strings.CutPrefix(env, "FLAGWARDEN_HTTP_LISTEN="); ok {
			listen = v
		}
	}
	require.Contains(t, config.EnvNames(), "FLAGWARDEN_HTTP_LISTEN")
	require.NotEmpty(t, listen, "the image sets FLAGWARDEN_HTTP_LISTEN so that the server is reachable from outside the container")
	port := listen[strings.LastIndex(listen, ":")+1:]
	require.Equal(t, port, runtime.last(t, "EXPOSE"))
	require.Equal(t, port, strconv.Itoa(int(namedPort(t, o.container(t), "http"))))

	// The health check probes the liveness path on that port.
	hc := runtime.last(t, "HEALTHCHECK")
	_, hcCmd, ok := strings.Cut(hc, "CMD ")
	require.True(t, ok, "HEALTHCHECK runs a command")
	probe := execForm(t, "HEALTHCHECK CMD", hcCmd)
	require.Equal(t, "http://127.0.0.1:"+port+o.container(t).LivenessProbe.HTTPGet.Path, probe[len(probe)-1])
}

func TestDockerignoreKeepsTheSources(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", ".dockerignore"))
	require.NoError(t, err)
	var patterns []string
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	require.Contains(t, patterns, ".git", "the repository history stays out of the context")
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "web", "collectors", "detectors", "rebuild", "dashboards"} {
		for _, p := range patterns {
			ok, err := filepath.Match(p, needed)
			require.NoError(t, err)
			require.False(t, ok, ".dockerignore pattern %q drops %s, which the build needs", p, needed)
		}
	}
}
