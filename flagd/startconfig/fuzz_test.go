package startconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParse feeds arbitrary command lines, --sources JSON and --config files to
// Parse: it never panics, and whatever it accepts renders (Args) into a command
// line that parses back to the same configuration (empty and absent lists and maps
// being the same), the webhook's guarantee.
func FuzzParse(f *testing.F) {
	f.Add("-p 9000 -X a=1,b=2 -C https://*.example.com", `[{"uri":"ns/ff","provider":"kubernetes"}]`, "")
	f.Add("-f file:a.json --stream-deadline 1.5s --no-keep-alive-permit-without-stream", "", "context-value:\n  k: v,w\nport: 7000\n")
	f.Add("-t otel -o collector:4317 -H X-A=a", `[{"uri":"https://h/f.json","provider":"http","headers":{"X":"y"},"oauth":{"tokenUrl":"https://t","folder":"/s"}}]`, `{"sources":[{"uri":"x","provider":"file"}]}`)
	f.Add("--uri a\\,b -m 1 --max-request-body=0", "[]", "sources: nope\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, args, sources, config string) {
		argv := append([]string{"start"}, strings.Fields(args)...)
		if sources != "" {
			argv = append(argv, "--sources", sources)
		}
		if config != "" {
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			argv = append(argv, "--config", path)
		}
		c, err := Parse(argv)
		if err != nil {
			return
		}
		rendered, err := c.Args()
		if err != nil {
			return // a value no command line can carry; Args says so
		}
		back, err := Parse(rendered)
		if err != nil {
			t.Fatalf("Parse(%q) accepted, but its rendering %q is refused: %v", argv, rendered, err)
		}
		if diff := cmp.Diff(*c, *back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("render → parse changed %q (-parsed +re-parsed):\n%s\nrendered: %q", argv, diff, rendered)
		}
	})
}
