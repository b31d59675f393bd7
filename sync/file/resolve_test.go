package file

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestResolve checks which directories are watched and which paths matter for the
// layouts the source must follow.
func TestResolve(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(rel string) {
		if err := os.WriteFile(filepath.Join(root, rel), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	// plain/flags.json
	plain := mk("plain")
	write("plain/flags.json")
	// cm: a ConfigMap volume as the kubelet writes it
	cm := mk("cm")
	ts := mk("cm/..2026_01_01_00_00_00.1")
	write("cm/..2026_01_01_00_00_00.1/flags.json")
	link("..2026_01_01_00_00_00.1", "cm/..data")
	link("..data/flags.json", "cm/flags.json")
	// other: a symlink to a file in another directory, absolute
	other := mk("other")
	write("other/real.json")
	ln := mk("ln")
	link(filepath.Join(other, "real.json"), "ln/flags.json")
	// a symlinked directory (a "current" release link)
	rel := mk("rel")
	v1 := mk("rel/v1")
	write("rel/v1/flags.json")
	link("v1", "rel/current")
	// a dangling link
	dang := mk("dang")
	link("..data/flags.json", "dang/flags.json")

	tests := []struct {
		name string
		path string
		want watchPlan
	}{
		{"plain file", plain + "/flags.json", watchPlan{dirs: []string{plain}, paths: []string{plain + "/flags.json"}}},
		{"missing file", plain + "/nope.json", watchPlan{dirs: []string{plain}, paths: []string{plain + "/nope.json"}}},
		{"missing directories", plain + "/a/b/flags.json", watchPlan{dirs: []string{plain},
			paths: []string{plain + "/a/b/flags.json"}, missingDir: plain + "/a/b"}},
		{"configmap", cm + "/flags.json", watchPlan{dirs: []string{cm, ts},
			paths: []string{cm + "/flags.json", cm + "/..data", ts + "/flags.json"}}},
		{"symlink to another directory", ln + "/flags.json", watchPlan{dirs: []string{ln, other},
			paths: []string{ln + "/flags.json", other + "/real.json"}}},
		{"symlinked directory", rel + "/current/flags.json", watchPlan{dirs: []string{rel, v1},
			paths: []string{rel + "/current", v1 + "/flags.json"}}},
		{"dangling symlink", dang + "/flags.json", watchPlan{dirs: []string{dang},
			paths: []string{dang + "/flags.json", dang + "/..data/flags.json"}, missingDir: dang + "/..data"}},
		{"file used as a directory", plain + "/flags.json/x", watchPlan{dirs: []string{plain},
			paths: []string{plain + "/flags.json/x"}, missingDir: plain + "/flags.json"}},
		{"dot-dot", plain + "/../plain/flags.json", watchPlan{dirs: []string{plain}, paths: []string{plain + "/flags.json"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.path)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(watchPlan{})); diff != "" {
				t.Errorf("resolve(%s) (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

// TestRelevant checks the event filter: events on the paths that matter or on their
// ancestors count, events on other names in a watched directory do not.
func TestRelevant(t *testing.T) {
	plan := watchPlan{paths: []string{"/cm/flags.json", "/cm/..data", "/cm/..2026_1/flags.json"}}
	tests := []struct {
		name string
		want bool
	}{
		{"/cm/flags.json", true},
		{"/cm/..data", true},
		{"/cm/..2026_1/flags.json", true},
		{"/cm/..2026_1", true}, // the target directory itself removed
		{"/cm", true},          // the watched directory itself removed or moved
		{"/", true},
		{"/cm/..data_tmp", false},
		{"/cm/..2026_2", false}, // the kubelet preparing the next version
		{"/cm/other.json", false},
		{"/cm/flags.json.swp", false},
		{"/cmx", false},
	}
	for _, tt := range tests {
		if got := plan.relevant(tt.name); got != tt.want {
			t.Errorf("relevant(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
