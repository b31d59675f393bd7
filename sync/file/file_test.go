package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/store"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	"github.com/flagpole-dev/flagpole/sync/sourcetest"
)

// wait bounds the waits for reads and store states, as sourcetest.DefaultWait bounds the
// waits for updates; none of them asserts on time.
const wait = sourcetest.DefaultWait

// Settle periods: "never" keeps a transient state unreported for the whole test, so
// that a test can assert nothing is reported; "soon" reports it quickly.
const (
	never = time.Hour
	soon  = time.Millisecond
)

func doc(value string) string {
	return fmt.Sprintf(`{"flags":{"f":{"state":"ENABLED","variants":{"a":%q},"defaultVariant":"a"}}}`, value)
}

// watched is a running source with its updates and the kinds of its reads.
type watched struct {
	*sourcetest.Updates
	t     *testing.T
	loads chan string
}

func run(t *testing.T, path string, opts ...Option) *watched {
	t.Helper()
	w := &watched{t: t, loads: make(chan string, 100000)}
	s := New(path, opts...)
	s.onLoad = func(kind string) { w.loads <- kind }
	w.Updates = sourcetest.Run(t, s)
	return w
}

// errSkipping skips error updates until one contains all the parts; data fails.
func (w *watched) errSkipping(parts ...string) {
	w.t.Helper()
	for {
		u := w.Next()
		if u.Err == nil {
			w.t.Fatalf("want an error containing %q, got data %s", parts, u.Data)
		}
		matched := true
		for _, p := range parts {
			matched = matched && strings.Contains(u.Err.Error(), p)
		}
		if matched {
			return
		}
	}
}

// load waits for a read of this kind (reads of other kinds may come first). Quiet
// may follow it: onLoad runs after the read's update (if any) was sent.
func (w *watched) load(kind string) {
	w.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case k := <-w.loads:
			if k == kind {
				return
			}
		case <-deadline:
			w.t.Fatalf("no %q read within %s", kind, wait)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replace writes a temporary file beside path and renames it over path, as editors
// and most deployment tools do.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// configMap writes files into dir exactly as the kubelet's AtomicWriter updates a
// ConfigMap volume: a new timestamped directory, a `..data_tmp` symlink to it renamed
// over `..data`, user-visible symlinks `<key> -> ..data/<key>` for new keys, then the
// old timestamped directory removed.
func configMap(t *testing.T, dir, ts string, files map[string]string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		writeFile(t, filepath.Join(dir, ts, name), content)
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), data); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInitialDocument(t *testing.T) {
	yamlDoc := "flags:\n  f:\n    state: ENABLED\n    variants:\n      a: yaml\n    defaultVariant: a\n"
	tests := []struct{ name, file, content string }{
		{"json", "flags.json", doc("json")},
		{"yaml", "flags.yaml", yamlDoc},
		{"yaml without extension", "flags", yamlDoc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), tt.file)
			writeFile(t, path, tt.content)
			run(t, path).Data(tt.content)
		})
	}
}

func TestAtomicRename(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	w := run(t, path, WithSettle(never))
	w.Data(doc("v0"))
	for i := 1; i <= 5; i++ {
		replace(t, path, doc(fmt.Sprint("v", i)))
		w.Data(doc(fmt.Sprint("v", i)))
	}
}

func TestConfigMapSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	configMap(t, dir, "..2026_01_01_00_00_00.000000000", map[string]string{"flags.json": doc("v0")})
	w := run(t, filepath.Join(dir, "flags.json"), WithSettle(never))
	w.Data(doc("v0"))
	for i := 1; i <= 5; i++ {
		configMap(t, dir, fmt.Sprintf("..2026_01_01_00_00_0%d.000000000", i), map[string]string{
			"flags.json": doc(fmt.Sprint("v", i)), "other": fmt.Sprint(i)})
		w.Data(doc(fmt.Sprint("v", i)))
	}
}

// TestConfigMapKeyRemoved: a ConfigMap update that drops the key leaves a dangling
// symlink; it is reported (after settling) and the key's return is followed.
func TestConfigMapKeyRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	configMap(t, dir, "..1", map[string]string{"flags.json": doc("v0")})
	w := run(t, filepath.Join(dir, "flags.json"), WithSettle(soon))
	w.Data(doc("v0"))
	configMap(t, dir, "..2", map[string]string{"other": "x"})
	w.Err("does not exist")
	configMap(t, dir, "..3", map[string]string{"flags.json": doc("v0")})
	w.Data(doc("v0")) // sent again after the error, although unchanged, so the error clears
}

// TestTruncateThenWrite: an editor truncates the file, then writes it. The empty file
// is read in between, and is not reported.
func TestTruncateThenWrite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	w := run(t, path, WithSettle(never))
	w.Data(doc("v0"))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.load("empty")
	if _, err := f.WriteString(doc("v1")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	w.Data(doc("v1"))
}

// TestHalfWritten: a document read half-written is not sent; the whole one is.
func TestHalfWritten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	w := run(t, path, WithSettle(never))
	w.Data(doc("v0"))
	whole := doc("v1")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(whole[:len(whole)/2]); err != nil {
		t.Fatal(err)
	}
	w.load("incomplete")
	if _, err := f.WriteString(whole[len(whole)/2:]); err != nil {
		t.Fatal(err)
	}
	w.Data(whole)
}

func TestDeleteAndRecreate(t *testing.T) {
	t.Parallel()
	t.Run("reported once settled, then re-sent", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, doc("v0"))
		w := run(t, path, WithSettle(soon))
		w.Data(doc("v0"))
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		w.Err(path, "does not exist")
		replace(t, path, doc("v0")) // atomic: a half-written file would be reported here too
		w.Data(doc("v0"))
	})
	t.Run("a brief absence is not reported", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, doc("v0"))
		w := run(t, path, WithSettle(never))
		w.Data(doc("v0"))
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		w.load("missing")
		writeFile(t, path, doc("v0"))
		w.load("unchanged")
		w.Quiet()
	})
}

func TestInvalidContent(t *testing.T) {
	t.Parallel()
	t.Run("syntax error is sent once settled", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, doc("v0"))
		w := run(t, path, WithSettle(soon))
		w.Data(doc("v0"))
		replace(t, path, `{"flags": {`)
		w.Data(`{"flags": {`) // the store rejects it with the parse problem
		replace(t, path, doc("v0"))
		w.Data(doc("v0"))
	})
	t.Run("schema error is sent at once", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, doc("v0"))
		w := run(t, path, WithSettle(never))
		w.Data(doc("v0"))
		replace(t, path, `{"flags": 1}`)
		w.Data(`{"flags": 1}`)
	})
	t.Run("syntax error at startup is sent at once", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, `{`)
		run(t, path, WithSettle(never)).Data(`{`)
	})
	t.Run("empty at startup is reported at once", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, " \n")
		run(t, path, WithSettle(never)).Err("empty")
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		writeFile(t, path, doc("v0"))
		run(t, path, WithMaxSize(10)).Err("larger than 10 bytes")
	})
	t.Run("a directory", func(t *testing.T) {
		t.Parallel()
		run(t, t.TempDir()).Err("is a directory")
	})
}

func TestMissingAtStartup(t *testing.T) {
	t.Parallel()
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "flags.json")
		w := run(t, path, WithSettle(never))
		w.Err(path, "does not exist")
		replace(t, path, doc("v0"))
		w.Data(doc("v0"))
	})
	t.Run("directory", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		dir := filepath.Join(root, "a", "b")
		path := filepath.Join(dir, "flags.json")
		w := run(t, path, WithSettle(never))
		w.Err("directory " + dir + " does not exist")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, doc("v0"))
		w.Data(doc("v0"))
	})
	t.Run("configmap volume not populated yet", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "flags.json")
		w := run(t, path, WithSettle(never))
		w.Err("does not exist")
		configMap(t, dir, "..1", map[string]string{"flags.json": doc("v0")})
		w.Data(doc("v0"))
	})
}

func TestDirectoryRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "flags.json")
	writeFile(t, path, doc("v0"))
	w := run(t, path, WithSettle(soon))
	w.Data(doc("v0"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// The file goes first, then the directory: "the file does not exist" may be
	// reported before the directory is gone.
	w.errSkipping("directory " + dir + " does not exist")
	// Re-created atomically (a half-populated directory would be reported too).
	if err := os.Mkdir(dir+".tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir+".tmp", "flags.json"), doc("v1"))
	if err := os.Rename(dir+".tmp", dir); err != nil {
		t.Fatal(err)
	}
	w.Data(doc("v1"))
	replace(t, path, doc("v2")) // and the new directory is watched
	w.Data(doc("v2"))
}

// TestDirectoryReplaced: the directory is moved away and another one moved in.
func TestDirectoryReplaced(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "conf")
	for _, d := range []string{dir, dir + ".new"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "flags.json")
	writeFile(t, path, doc("v0"))
	writeFile(t, filepath.Join(dir+".new", "flags.json"), doc("v1"))
	w := run(t, path, WithSettle(never))
	w.Data(doc("v0"))
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".new", dir); err != nil {
		t.Fatal(err)
	}
	w.Data(doc("v1"))
	replace(t, path, doc("v2"))
	w.Data(doc("v2"))
}

// TestSymlinkedDirectory: the path goes through a "current -> v1" directory link that
// is swapped atomically to v2.
func TestSymlinkedDirectory(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for i, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(root, v), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, v, "flags.json"), doc(fmt.Sprint("v", i+1)))
	}
	if err := os.Symlink("v1", filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
	w := run(t, filepath.Join(root, "current", "flags.json"), WithSettle(never))
	w.Data(doc("v1"))
	if err := os.Symlink("v2", filepath.Join(root, "current.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "current.tmp"), filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
	w.Data(doc("v2"))
	replace(t, filepath.Join(root, "v2", "flags.json"), doc("v3"))
	w.Data(doc("v3"))
}

// TestSymlinkToAnotherDirectory: the path is a symlink to a file elsewhere; writes to
// the target, a rename over the target and a re-pointed link are all followed.
func TestSymlinkToAnotherDirectory(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	target, other := filepath.Join(root, "data", "real.json"), filepath.Join(root, "data", "other.json")
	if err := os.Mkdir(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, target, doc("v0"))
	writeFile(t, other, doc("other"))
	path := filepath.Join(root, "etc", "flags.json")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	w := run(t, path, WithSettle(never))
	w.Data(doc("v0"))
	writeFile(t, target, doc("v1")) // in place
	w.Data(doc("v1"))
	replace(t, target, doc("v2"))
	w.Data(doc("v2"))
	if err := os.Symlink(other, path+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	w.Data(doc("other"))
	replace(t, target, doc("v3")) // the old target no longer matters (filtered out)
	replace(t, other, doc("other2"))
	w.Data(doc("other2"))
}

func TestUnchangedIsNotResent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	w := run(t, path)
	w.Data(doc("v0"))
	replace(t, path, doc("v0"))
	w.load("unchanged")
	w.Quiet()
}

// TestBurst: many saves in a row; every update is one of them and the last one wins.
func TestBurst(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	w := run(t, path, WithSettle(never))
	w.Data(doc("v0"))
	written := map[string]bool{}
	const n = 200
	for i := 1; i <= n; i++ {
		d := doc(fmt.Sprint("v", i))
		written[d] = true
		if i%2 == 0 {
			replace(t, path, d)
		} else {
			writeFile(t, path, d)
		}
	}
	for {
		u := w.Next()
		if u.Err != nil {
			t.Fatalf("error during the burst: %v", u.Err)
		}
		if !written[string(u.Data)] {
			t.Fatalf("sent a document that was never written: %s", u.Data)
		}
		if string(u.Data) == doc(fmt.Sprint("v", n)) {
			return
		}
	}
}

// TestStoreKeepsLastGoodFlags runs the source into a real store: while the file is
// gone or invalid the last good flags stay served, readiness stays true, and the
// source status says what is wrong; a good file clears it.
func TestStoreKeepsLastGoodFlags(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	src := New(path, WithSettle(soon))
	st, err := store.New([]string{src.Name()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { flagsync.Feed(ctx, st, []flagsync.Source{src}); close(done) }()
	defer func() {
		cancel()
		<-done
	}()
	type state struct {
		Ready     bool
		Value     any
		LastError string
	}
	get := func() state {
		s := state{Ready: st.Ready()}
		if e, ok := st.Current().Get("f", store.Selector{}); ok {
			s.Value = e.Flag.EvaluateAs(eval.TypeString, nil, nil).Value
		}
		if status := st.Status(); len(status) == 1 {
			s.LastError = status[0].LastError
		}
		return s
	}
	eventually := func(want state) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			got := get()
			if cmp.Equal(want, got) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("store state (-want +got):\n%s", cmp.Diff(want, got))
			}
			time.Sleep(time.Millisecond)
		}
	}
	eventually(state{Ready: true, Value: "v0"})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(state{Ready: true, Value: "v0", LastError: "file source " + path + ": the file does not exist (waiting for it to be created)"})
	replace(t, path, `{"flags":{"f":{"state":"ENABLED","variants":{"a":"v1"},"defaultVariant":"b"}}}`)
	deadline := time.Now().Add(wait)
	for !strings.Contains(get().LastError, "defaultVariant") {
		if time.Now().After(deadline) {
			t.Fatalf("the invalid document was not rejected: %+v", get())
		}
		time.Sleep(time.Millisecond)
	}
	if got := get(); got.Value != "v0" || !got.Ready {
		t.Fatalf("after an invalid document: %+v, want v0 still served and ready", got)
	}
	replace(t, path, doc("v0"))
	eventually(state{Ready: true, Value: "v0"})
}

// TestReadErrorIsRetried: a read that fails for a reason other than a missing or
// empty file (here: too many open files, as under fd exhaustion) is reported and
// retried with backoff until it succeeds, without waiting for another file event;
// the source logs that it serves old flags, and that it recovered.
func TestReadErrorIsRetried(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, doc("v0"))
	var logs syncBuffer
	w := &watched{t: t, loads: make(chan string, 100000)}
	s := New(path, WithLogger(zerolog.New(&logs)))
	s.onLoad = func(kind string) { w.loads <- kind }
	var failing atomic.Int32
	s.open = func(name string) (*os.File, error) {
		if failing.Load() > 0 {
			failing.Add(-1)
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
		}
		return os.Open(name)
	}
	w.Updates = sourcetest.Run(t, s)
	w.Data(doc("v0"))
	failing.Store(3) // the next three opens fail: the event's read and two retries
	replace(t, path, doc("v1"))
	w.errSkipping("too many open files")
	// no further event: only the retries read the new document
	w.Data(doc("v1"))
	out := logs.String()
	if !strings.Contains(out, "retrying") || !strings.Contains(out, "too many open files") {
		t.Errorf("the failing read was not logged with its retry:\n%s", out)
	}
	if !strings.Contains(out, "recovered") {
		t.Errorf("the recovery was not logged:\n%s", out)
	}
}

// syncBuffer is a log sink safe for the source's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
