package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The output formats of every command that prints data, as kubectl spells them.
const (
	formatTable = "table"
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

var formats = []string{formatTable, formatWide, formatJSON, formatYAML}

// formatValue is -o's value: one of formats.
type formatValue struct{ v *string }

func (f formatValue) String() string { return *f.v }
func (f formatValue) Type() string   { return "FORMAT" }
func (f formatValue) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	if !slices.Contains(formats, s) {
		return fmt.Errorf("must be one of %s", strings.Join(formats, ", "))
	}
	*f.v = s
	return nil
}

// output is a command's -o/--output and its --json alias.
type output struct {
	format string
	json   bool
}

// outputFlags registers -o and --json on fs (persistent flags for a command group)
// and completes -o's values on c.
func outputFlags(c *cobra.Command, fs *pflag.FlagSet) *output {
	o := &output{}
	fs.VarP(formatValue{&o.format}, "output", "o", "output `FORMAT`: table (default), wide (more columns), json or yaml")
	fs.BoolVar(&o.json, "json", false, "same as -o json")
	_ = c.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
	return o
}

// Format is the chosen format: --json is -o json, and the two must agree.
func (o *output) Format() (string, error) {
	switch {
	case o.json && o.format != "" && o.format != formatJSON:
		return "", usagef("--json and -o %s disagree: give one of them", o.format)
	case o.json:
		return formatJSON, nil
	case o.format == "":
		return formatTable, nil
	}
	return o.format, nil
}

// structured reports whether f is a data format rather than a table.
func structured(f string) bool { return f == formatJSON || f == formatYAML }

// writeData writes v as indented JSON or as YAML with the same keys (the types' json
// tags) in the same order.
func writeData(w io.Writer, format string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if format != formatYAML {
		_, err := w.Write(buf.Bytes())
		return err
	}
	// JSON is YAML: read it back as a node tree, which keeps the key order, and print
	// it in block style.
	var n yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &n); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	blockStyle(&n)
	ye := yaml.NewEncoder(w)
	ye.SetIndent(2)
	if err := ye.Encode(&n); err != nil {
		return err
	}
	return ye.Close()
}

// blockStyle drops the flow style and quoting JSON's syntax gave every node; the
// encoder quotes again whatever would otherwise read as another type.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// palette colours status words where colour is allowed (Env.colour), and leaves them
// plain elsewhere.
type palette bool

func (p palette) paint(code, s string) string {
	if !p {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) red(s string) string    { return p.paint("31", s) }
func (p palette) yellow(s string) string { return p.paint("33", s) }
func (p palette) green(s string) string  { return p.paint("32", s) }

// table is a tab-aligned table whose columns marked wide (a header starting with "+")
// are printed only with -o wide.
type table struct {
	tw   *tabwriter.Writer
	show []bool
}

func newTable(w io.Writer, wide bool, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), show: make([]bool, len(headers))}
	names := make([]string, 0, len(headers))
	for i, h := range headers {
		name, wideOnly := strings.CutPrefix(h, "+")
		t.show[i] = wide || !wideOnly
		if t.show[i] {
			names = append(names, name)
		}
	}
	fmt.Fprintln(t.tw, strings.Join(names, "\t"))
	return t
}

// row writes one row, a cell per header.
func (t *table) row(cells ...string) {
	shown := make([]string, 0, len(cells))
	for i, c := range cells {
		if i < len(t.show) && t.show[i] {
			shown = append(shown, c)
		}
	}
	fmt.Fprintln(t.tw, strings.Join(shown, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }
