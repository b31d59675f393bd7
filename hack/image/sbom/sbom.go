// Package sbom writes the software bill of materials of one platform image of
// flagpole as an SPDX 2.3 JSON document, from what the image holds: the Go build
// information of the binary (main module, every dependency module with its
// version and go.sum hash, the Go version, the build settings) and the SHA-1 and
// SHA-256 of every file. The document is a function of its Input alone: its
// time is the commit time, its namespace is derived from the image's manifest
// digest, and every list is sorted, so two builds of one commit write the same
// bytes.
package sbom

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // SPDX 2.3 requires a SHA1 checksum on every file (clause 8.4); SHA256 is given too
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
)

// MediaType is the IANA media type of an SPDX JSON document, and the
// artifactType of the OCI artifact that carries it.
const MediaType = "application/spdx+json"

// SPDX constants of the documents written here.
const (
	Version      = "SPDX-2.3"
	DataLicense  = "CC0-1.0"
	DocumentID   = "SPDXRef-DOCUMENT"
	ImageID      = "SPDXRef-Image"
	NoAssertion  = "NOASSERTION"
	timeLayout   = "2006-01-02T15:04:05Z"
	goSumComment = "go.sum "
)

// Document is an SPDX 2.3 document (the fields flagpole writes).
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Comment           string         `json:"comment,omitempty"`
	Packages          []Package      `json:"packages"`
	Files             []File         `json:"files"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says when and by what the document was made.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
	Comment  string   `json:"comment,omitempty"`
}

// Package is an SPDX package: the image, a Go module or the Go standard library.
type Package struct {
	SPDXID                string        `json:"SPDXID"`
	Name                  string        `json:"name"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []Checksum    `json:"checksums,omitempty"`
	SourceInfo            string        `json:"sourceInfo,omitempty"`
	LicenseConcluded      string        `json:"licenseConcluded"`
	LicenseDeclared       string        `json:"licenseDeclared"`
	CopyrightText         string        `json:"copyrightText"`
	Comment               string        `json:"comment,omitempty"`
	ExternalRefs          []ExternalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
	Annotations           []Annotation  `json:"annotations,omitempty"`
}

// File is an SPDX file: one regular file of the image.
type File struct {
	SPDXID           string     `json:"SPDXID"`
	FileName         string     `json:"fileName"`
	FileTypes        []string   `json:"fileTypes"`
	Checksums        []Checksum `json:"checksums"`
	LicenseConcluded string     `json:"licenseConcluded"`
	CopyrightText    string     `json:"copyrightText"`
	Comment          string     `json:"comment,omitempty"`
}

// Checksum is an algorithm (SHA1, SHA256) and a lower-case hex value.
type Checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

// ExternalRef is a package URL (PACKAGE-MANAGER purl) or a CPE (SECURITY cpe23Type).
type ExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// Relationship links two elements (DESCRIBES, CONTAINS, GENERATED_FROM, DEPENDS_ON).
type Relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

// Annotation is a remark on an element; flagpole records the Go build settings
// of the binary as annotations of its main module.
type Annotation struct {
	AnnotationDate string `json:"annotationDate"`
	AnnotationType string `json:"annotationType"`
	Annotator      string `json:"annotator"`
	Comment        string `json:"comment"`
}

// Input is what a document is made from.
type Input struct {
	// Repository (the image name without tag), Version (the tag), Revision (the
	// commit) and Source (the repository URL) name the image, as oci.Meta does.
	Repository, Version, Revision, Source string
	// Created is the commit time, the document's only time.
	Created time.Time
	// Platform is the image's platform; Manifest the digest of its manifest,
	// the subject of the artifact that carries the document.
	Platform v1.Platform
	Manifest v1.Hash
	// Files is the image's file tree; directories are left out of the document.
	// The file at rootfs.Binary must be a Go binary: its build information lists
	// the modules.
	Files []rootfs.File
	// CASource, when set, is the Go module the CA bundle's certificates come from
	// (the image tool's own dependency, pinned in hack/image/go.mod).
	CASource *debug.Module
}

// BuildSettingPrefix starts the comment of each annotation that records a Go
// build setting of the binary ("go build setting CGO_ENABLED=0").
const BuildSettingPrefix = "go build setting "

// Generate writes the document of in.
func Generate(in Input) (*Document, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	var binary []byte
	for _, f := range in.Files {
		if f.Path == rootfs.Binary {
			binary = f.Data
		}
	}
	if binary == nil {
		return nil, fmt.Errorf("sbom: no %s among the image's files", rootfs.Binary)
	}
	info, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		return nil, fmt.Errorf("sbom: %s has no Go build information: %w", rootfs.Binary, err)
	}
	created := in.Created.UTC().Format(timeLayout)
	tool := "Tool: flagpole-hack-image-" + in.Version
	slug := platformSlug(in.Platform)
	doc := &Document{
		SPDXVersion: Version, DataLicense: DataLicense, SPDXID: DocumentID,
		Name:              fmt.Sprintf("%s-%s-%s", path.Base(in.Repository), in.Version, slug),
		DocumentNamespace: Namespace(in.Source, in.Repository, in.Version, in.Platform, in.Manifest),
		CreationInfo: CreationInfo{Created: created, Creators: []string{tool},
			Comment: "The time is the commit's, not the build's: two builds of one commit write the same document."},
		Comment: fmt.Sprintf("The %s image of %s:%s (manifest %s): its files and the Go build information of %s. "+
			"This document travels as an OCI artifact (artifactType %s) whose subject is that manifest.",
			in.Platform, in.Repository, in.Version, in.Manifest, rootfs.Binary, MediaType),
	}

	// the image
	doc.Packages = append(doc.Packages, Package{
		SPDXID: ImageID, Name: in.Repository, VersionInfo: in.Version, DownloadLocation: NoAssertion,
		Checksums:        []Checksum{{Algorithm: "SHA256", ChecksumValue: in.Manifest.Hex}},
		LicenseConcluded: NoAssertion, LicenseDeclared: NoAssertion, CopyrightText: NoAssertion,
		Comment:               fmt.Sprintf("The %s image; its checksum is its manifest's digest.", in.Platform),
		ExternalRefs:          []ExternalRef{{"PACKAGE-MANAGER", "purl", ociPURL(in)}},
		PrimaryPackagePurpose: "CONTAINER",
	})
	doc.Relationships = append(doc.Relationships, Relationship{DocumentID, "DESCRIBES", ImageID})

	// the files, sorted by path
	files := slices.Clone(in.Files)
	slices.SortFunc(files, func(a, b rootfs.File) int { return strings.Compare(a.Path, b.Path) })
	ids := map[string]string{}
	for _, f := range files {
		if f.Mode.IsDir() {
			continue
		}
		if !f.Mode.IsRegular() {
			return nil, fmt.Errorf("sbom: %s is neither a regular file nor a directory", f.Path)
		}
		id := FileID(f.Path)
		if _, dup := ids[id]; dup {
			return nil, fmt.Errorf("sbom: two files map to the SPDX id %s", id)
		}
		ids[id] = f.Path
		sha1sum, sha256sum := sha1.Sum(f.Data), sha256.Sum256(f.Data) //nolint:gosec // SPDX requires SHA1 (see the import)
		file := File{SPDXID: id, FileName: "." + f.Path, FileTypes: []string{"TEXT"},
			Checksums:        []Checksum{{"SHA1", hex.EncodeToString(sha1sum[:])}, {"SHA256", hex.EncodeToString(sha256sum[:])}},
			LicenseConcluded: NoAssertion, CopyrightText: NoAssertion}
		switch f.Path {
		case rootfs.Binary:
			file.FileTypes = []string{"APPLICATION", "BINARY"}
			file.Comment = "The static Go binary, the image's entrypoint; its modules are the packages this file is GENERATED_FROM and that module DEPENDS_ON."
		case rootfs.CACertificates:
			file.Comment = "PEM bundle of Mozilla's NSS roots trusted for TLS servers without further constraints."
		case "/etc/passwd", "/etc/group":
			file.Comment = "Written by hack/image: root and the non-root user 65532 the image runs as."
		}
		doc.Files = append(doc.Files, file)
		doc.Relationships = append(doc.Relationships, Relationship{ImageID, "CONTAINS", id})
	}

	// the Go modules of the binary
	mainID := ModuleID(info.Main.Path)
	mainVersion := info.Main.Version
	mainComment := "The main module of " + rootfs.Binary + "."
	if mainVersion == "" || mainVersion == "(devel)" {
		mainVersion = in.Version
		mainComment += fmt.Sprintf(" Its Go build information gives the version %q; the version here is the one stamped into the binary (-X main.version, git describe).", info.Main.Version)
	}
	mainPkg := Package{
		SPDXID: mainID, Name: info.Main.Path, VersionInfo: mainVersion,
		DownloadLocation: vcsLocation(in.Source, in.Revision),
		SourceInfo:       fmt.Sprintf("built from commit %s with %s", in.Revision, info.GoVersion),
		LicenseConcluded: NoAssertion, LicenseDeclared: NoAssertion, CopyrightText: NoAssertion,
		Comment:               mainComment,
		ExternalRefs:          []ExternalRef{{"PACKAGE-MANAGER", "purl", goPURL(info.Main.Path, mainVersion)}},
		PrimaryPackagePurpose: "APPLICATION",
	}
	for _, s := range info.Settings {
		mainPkg.Annotations = append(mainPkg.Annotations, Annotation{AnnotationDate: created, AnnotationType: "OTHER",
			Annotator: tool, Comment: BuildSettingPrefix + s.Key + "=" + s.Value})
	}
	doc.Packages = append(doc.Packages, mainPkg)
	doc.Relationships = append(doc.Relationships, Relationship{FileID(rootfs.Binary), "GENERATED_FROM", mainID})

	goVersion := strings.TrimPrefix(strings.Fields(info.GoVersion + " ")[0], "go")
	doc.Packages = append(doc.Packages, Package{
		SPDXID: StdlibID, Name: "stdlib", VersionInfo: info.GoVersion, DownloadLocation: NoAssertion,
		LicenseConcluded: NoAssertion, LicenseDeclared: NoAssertion, CopyrightText: NoAssertion,
		Comment: "The Go standard library and runtime linked into " + rootfs.Binary + " (the toolchain that built it).",
		ExternalRefs: []ExternalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/stdlib@" + escape(goVersion)},
			{"SECURITY", "cpe23Type", "cpe:2.3:a:golang:go:" + goVersion + ":-:*:*:*:*:*:*"}},
		PrimaryPackagePurpose: "LIBRARY",
	})
	deps := []Package{}
	for _, d := range info.Deps {
		p, err := modulePackage(d)
		if err != nil {
			return nil, err
		}
		deps = append(deps, p)
	}
	slices.SortFunc(deps, func(a, b Package) int { return strings.Compare(a.SPDXID, b.SPDXID) })
	depIDs := []string{StdlibID}
	for i, p := range deps {
		if i > 0 && deps[i-1].SPDXID == p.SPDXID {
			return nil, fmt.Errorf("sbom: two modules map to the SPDX id %s", p.SPDXID)
		}
		if p.SPDXID == mainID {
			return nil, fmt.Errorf("sbom: the dependency %s has the main module's SPDX id", p.Name)
		}
		depIDs = append(depIDs, p.SPDXID)
	}
	doc.Packages = append(doc.Packages, deps...)
	for _, id := range depIDs {
		doc.Relationships = append(doc.Relationships, Relationship{mainID, "DEPENDS_ON", id})
	}

	// where the CA bundle comes from
	if in.CASource != nil {
		p, err := modulePackage(in.CASource)
		if err != nil {
			return nil, err
		}
		p.SPDXID = CASourceID
		p.PrimaryPackagePurpose = "SOURCE"
		p.Comment += " The source of " + rootfs.CACertificates + " (a dependency of the image tool, hack/image/go.mod; not linked into " + rootfs.Binary + ")."
		doc.Packages = append(doc.Packages, p)
		caID := FileID(rootfs.CACertificates)
		if _, ok := ids[caID]; !ok {
			return nil, fmt.Errorf("sbom: a CA source module but no %s among the files", rootfs.CACertificates)
		}
		doc.Relationships = append(doc.Relationships, Relationship{caID, "GENERATED_FROM", CASourceID})
	}
	return doc, nil
}

// IDs of the fixed packages.
const (
	StdlibID   = "SPDXRef-GoStdlib"
	CASourceID = "SPDXRef-CACertificatesSource"
)

// Marshal encodes doc as indented JSON with a final newline.
func Marshal(doc *Document) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Parse decodes an SPDX JSON document, refusing unknown fields and anything
// that is not SPDX 2.3.
func Parse(data []byte) (*Document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc Document
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not an SPDX document of this tool: %w", err)
	}
	if doc.SPDXVersion != Version || doc.SPDXID != DocumentID || doc.DataLicense != DataLicense {
		return nil, fmt.Errorf("spdxVersion %q, SPDXID %q, dataLicense %q: want %s, %s, %s", doc.SPDXVersion, doc.SPDXID, doc.DataLicense, Version, DocumentID, DataLicense)
	}
	return &doc, nil
}

// Namespace is the document namespace of the SBOM of one platform image: the
// source URL, the image's name, version and platform, and its manifest digest.
// It is unique per image and the same for every build of it.
func Namespace(source, repository, version string, p v1.Platform, manifest v1.Hash) string {
	return fmt.Sprintf("%s/spdx/%s-%s-%s-%s-%s", strings.TrimSuffix(source, "/"), path.Base(repository), version,
		platformSlug(p), manifest.Algorithm, manifest.Hex)
}

// FileID is the SPDX id of an image file ("/etc/passwd": SPDXRef-File-etc-passwd).
func FileID(p string) string { return "SPDXRef-File-" + idSafe(strings.TrimPrefix(p, "/")) }

// ModuleID is the SPDX id of a Go module.
func ModuleID(modulePath string) string { return "SPDXRef-GoModule-" + idSafe(modulePath) }

// Module is a Go module as the build information lists it, the one whose code is
// linked in (the replacement when go.mod replaces it).
type Module struct {
	Path, Version, Sum string
	// Replaces is "path version" of the module this one replaces, or empty.
	Replaces string
}

func (m Module) String() string {
	s := m.Path + " " + m.Version + " " + m.Sum
	if m.Replaces != "" {
		s += " (replaces " + m.Replaces + ")"
	}
	return s
}

// BuildInfoModules lists the dependency modules of a binary's build
// information, sorted by path: what `go version -m` prints on its dep and =>
// lines.
func BuildInfoModules(info *debug.BuildInfo) []Module {
	var out []Module
	for _, d := range info.Deps {
		m := Module{Path: d.Path, Version: d.Version, Sum: d.Sum}
		if d.Replace != nil {
			m = Module{Path: d.Replace.Path, Version: d.Replace.Version, Sum: d.Replace.Sum, Replaces: d.Path + " " + d.Version}
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Module) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Modules reads back the dependency modules of the document's binary (the
// packages its main module DEPENDS_ON, the standard library left out), sorted by
// path, checking that each package's SHA256 checksum is its go.sum hash.
func Modules(doc *Document) ([]Module, error) {
	byID := map[string]Package{}
	for _, p := range doc.Packages {
		byID[p.SPDXID] = p
	}
	var mainID string
	for _, r := range doc.Relationships {
		if r.RelationshipType == "GENERATED_FROM" && r.SPDXElementID == FileID(rootfs.Binary) {
			mainID = r.RelatedSPDXElement
		}
	}
	if mainID == "" {
		return nil, fmt.Errorf("no relationship %s GENERATED_FROM a main module", FileID(rootfs.Binary))
	}
	var out []Module
	var errs []error
	for _, r := range doc.Relationships {
		if r.SPDXElementID != mainID || r.RelationshipType != "DEPENDS_ON" || r.RelatedSPDXElement == StdlibID {
			continue
		}
		p, ok := byID[r.RelatedSPDXElement]
		if !ok {
			errs = append(errs, fmt.Errorf("%s DEPENDS_ON %s, which is not a package of the document", mainID, r.RelatedSPDXElement))
			continue
		}
		m := Module{Path: p.Name, Version: p.VersionInfo, Replaces: strings.TrimPrefix(p.SourceInfo, "replaces ")}
		for _, line := range strings.Split(p.Comment, "\n") {
			if s, ok := strings.CutPrefix(line, goSumComment); ok {
				m.Sum = strings.Fields(s + " ")[0]
			}
		}
		if want, err := h1Checksum(m.Sum); err != nil {
			errs = append(errs, fmt.Errorf("package %s: %w", p.Name, err))
		} else if want != nil && !slices.Contains(p.Checksums, *want) {
			errs = append(errs, fmt.Errorf("package %s: checksums %v lack %s %s (its go.sum hash %s)", p.Name, p.Checksums, want.Algorithm, want.ChecksumValue, m.Sum))
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Module) int { return strings.Compare(a.Path, b.Path) })
	return out, errors.Join(errs...)
}

// modulePackage is the package of a dependency module: its SHA256 checksum is
// the hash of its go.sum line (h1: is SHA-256, base64), which the comment
// also gives verbatim.
func modulePackage(d *debug.Module) (Package, error) {
	m := Module{Path: d.Path, Version: d.Version, Sum: d.Sum}
	if d.Replace != nil {
		m = Module{Path: d.Replace.Path, Version: d.Replace.Version, Sum: d.Replace.Sum, Replaces: d.Path + " " + d.Version}
	}
	if m.Path == "" {
		return Package{}, errors.New("sbom: a dependency without a module path in the build information")
	}
	p := Package{
		SPDXID: ModuleID(m.Path), Name: m.Path, VersionInfo: m.Version, DownloadLocation: NoAssertion,
		LicenseConcluded: NoAssertion, LicenseDeclared: NoAssertion, CopyrightText: NoAssertion,
		PrimaryPackagePurpose: "LIBRARY",
	}
	if m.Version != "" {
		p.ExternalRefs = []ExternalRef{{"PACKAGE-MANAGER", "purl", goPURL(m.Path, m.Version)}}
	}
	if m.Replaces != "" {
		p.SourceInfo = "replaces " + m.Replaces
	}
	if m.Sum != "" {
		c, err := h1Checksum(m.Sum)
		if err != nil {
			return Package{}, fmt.Errorf("sbom: module %s: %w", m.Path, err)
		}
		if c != nil {
			p.Checksums = []Checksum{*c}
		}
		p.Comment = goSumComment + m.Sum + "\nThe SHA256 checksum is this go.sum hash (h1: the SHA-256 of the module's file list with each file's SHA-256, golang.org/x/mod/sumdb/dirhash), not of an archive."
	}
	return p, nil
}

// h1Checksum turns a go.sum hash h1:<base64 SHA-256> into an SPDX checksum;
// other hash versions give nil.
func h1Checksum(sum string) (*Checksum, error) {
	if sum == "" {
		return nil, nil
	}
	b64, ok := strings.CutPrefix(sum, "h1:")
	if !ok {
		return nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != sha256.Size {
		return nil, fmt.Errorf("go.sum hash %q is not h1: and a base64 SHA-256", sum)
	}
	return &Checksum{Algorithm: "SHA256", ChecksumValue: hex.EncodeToString(raw)}, nil
}

func (in Input) check() error {
	var errs []error
	for field, v := range map[string]string{"repository": in.Repository, "version": in.Version, "revision": in.Revision, "source": in.Source} {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("sbom: no %s", field))
		}
	}
	if u, err := url.Parse(in.Source); in.Source != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || strings.Contains(in.Source, "#")) {
		errs = append(errs, fmt.Errorf("sbom: source %q is not an http(s) URL without a fragment (the document namespace is built on it)", in.Source))
	}
	if in.Created.IsZero() {
		errs = append(errs, errors.New("sbom: no creation time (the commit time)"))
	}
	if in.Manifest.Algorithm != "sha256" || len(in.Manifest.Hex) != 64 {
		errs = append(errs, fmt.Errorf("sbom: manifest digest %q is not a sha256 digest", in.Manifest))
	}
	if in.Platform.OS == "" || in.Platform.Architecture == "" {
		errs = append(errs, fmt.Errorf("sbom: platform %q lacks an OS or architecture", in.Platform.String()))
	}
	for _, f := range in.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			errs = append(errs, fmt.Errorf("sbom: file path %q: want an absolute, clean path below /", f.Path))
		}
		if f.Mode&fs.ModeType != 0 && !f.Mode.IsDir() {
			errs = append(errs, fmt.Errorf("sbom: %s is neither a regular file nor a directory", f.Path))
		}
	}
	return errors.Join(errs...)
}

func platformSlug(p v1.Platform) string {
	return strings.ReplaceAll(p.String(), "/", "-")
}

// vcsLocation is an SPDX VCS download location: git+<url>@<commit>.
func vcsLocation(source, revision string) string {
	if strings.HasPrefix(source, "https://") || strings.HasPrefix(source, "http://") {
		return "git+" + strings.TrimSuffix(source, "/") + "@" + revision
	}
	return NoAssertion
}

// goPURL is the package URL of a Go module: pkg:golang/<path>@<version>, each
// path segment and the version percent-encoded.
func goPURL(modulePath, version string) string {
	segs := strings.Split(modulePath, "/")
	for i, s := range segs {
		segs[i] = escape(s)
	}
	return "pkg:golang/" + strings.Join(segs, "/") + "@" + escape(version)
}

// ociPURL is the package URL of the image: pkg:oci/<name>@<digest> with the
// architecture, repository and tag as qualifiers (sorted by key).
func ociPURL(in Input) string {
	return fmt.Sprintf("pkg:oci/%s@%s?arch=%s&repository_url=%s&tag=%s", escape(strings.ToLower(path.Base(in.Repository))),
		escape(in.Manifest.String()), escape(in.Platform.Architecture), escape(in.Repository), escape(in.Version))
}

// escape percent-encodes everything but the unreserved characters of RFC 3986.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// idSafe maps s onto the characters of an SPDX id (letters, digits, . and -).
func idSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}
