// Command deploytool renders flagpole's install manifests and keeps the chart's
// README current:
//
//	deploytool kustomize <dir>                       # as kubectl kustomize <dir>
//	deploytool helm [-values file] [-release name]   # as helm template --include-crds deploy/chart/flagpole
//	deploytool chart-docs [-check]                   # the values table of deploy/chart/flagpole/README.md
//	deploytool release -image ref@sha256:... -version v -out dir   # install.yaml, crds.yaml (make release-manifests)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/flagpole-dev/flagpole/deploy/tools/chartdoc"
	"github.com/flagpole-dev/flagpole/deploy/tools/release"
	"github.com/flagpole-dev/flagpole/deploy/tools/render"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "deploytool:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a command: kustomize, helm, chart-docs or release")
	}
	root, err := render.RepoRoot(".")
	if err != nil {
		return err
	}
	chartDir := filepath.Join(root, "deploy", "chart", "flagpole")
	fl := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "kustomize":
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		if fl.NArg() != 1 {
			return errors.New("kustomize: want one directory")
		}
		y, err := render.Kustomize(fl.Arg(0))
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	case "helm":
		valuesFile := fl.String("values", "", "a values file merged over the chart's values.yaml")
		name := fl.String("release", "flagpole", "release name")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		c := render.Chart{Dir: chartDir, Release: *name, Namespace: "flagpole-system"}
		if *valuesFile != "" {
			data, err := os.ReadFile(*valuesFile)
			if err != nil {
				return err
			}
			if c.Values, err = render.ValuesFile(data); err != nil {
				return fmt.Errorf("%s: %w", *valuesFile, err)
			}
		}
		y, err := render.Helm(ctx, c)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	case "chart-docs":
		check := fl.Bool("check", false, "fail if README.md is not current instead of writing it")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
		if err != nil {
			return err
		}
		vs, err := chartdoc.Values(values)
		if err != nil {
			return err
		}
		readmePath := filepath.Join(chartDir, "README.md")
		readme, err := os.ReadFile(readmePath)
		if err != nil {
			return err
		}
		updated, err := chartdoc.Update(readme, chartdoc.Table(vs))
		if err != nil {
			return err
		}
		if bytes.Equal(updated, readme) {
			return nil
		}
		if *check {
			return fmt.Errorf("%s is not current: run make chart-docs", readmePath)
		}
		return os.WriteFile(readmePath, updated, 0o644)
	case "release":
		image := fl.String("image", "", "the image, pinned: repository:tag@sha256:...")
		version := fl.String("version", "", "the release's version")
		outDir := fl.String("out", "bin/release", "output directory")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		written, err := release.Write(root, *outDir, *version, *image)
		if err != nil {
			return err
		}
		for _, w := range written {
			fmt.Fprintln(out, w)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q: want kustomize, helm, chart-docs or release", args[0])
	}
}
