package modes

import "fmt"

// VersionCmd prints the build information.
type VersionCmd struct{}

// Run prints "flagpole <version> (commit <commit>, built <date>)".
func (VersionCmd) Run(build BuildInfo, io Stdio) error {
	_, err := fmt.Fprintf(io.Out, "flagpole %s (commit %s, built %s)\n", build.Version, build.Commit, build.Date)
	return err
}
