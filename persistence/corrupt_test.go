package persistence

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// plant closes nothing: it opens the (closed) store's database raw, lets f
// change it, and closes it again.
func plant(t *testing.T, fs vfs.FS, dir string, f func(db *pebble.DB)) {
	t.Helper()
	db := rawDB(t, fs, dir)
	f(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipLastByte(t *testing.T, db *pebble.DB, key []byte) {
	t.Helper()
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatalf("get %x: %v", key, err)
	}
	bad := append([]byte(nil), v...)
	closer.Close()
	bad[len(bad)-1] ^= 0x40
	if err := db.Set(key, bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptValues(t *testing.T) {
	fs := vfs.NewMem()
	a := ActorKey{Kind: "user", ID: "42"}
	b := ActorKey{Kind: "user", ID: "43"}
	c := ActorKey{Kind: "user", ID: "44"}
	s := openT(t, fs, "/data")
	commitT(t, s, events(a, 1, 3))
	w := events(b, 1, 2)
	w.Snapshot = &Snapshot{Seq: 2, State: state("b2")}
	commitT(t, s, w)
	commitT(t, s, &Write{Actor: c, Timers: []TimerChange{{Name: "t", Due: unix(1), Payload: state("p")}}})
	closeT(t, s)

	ac, bc, cc := encodeActor(a), encodeActor(b), encodeActor(c)
	plant(t, fs, "/data", func(db *pebble.DB) {
		flipLastByte(t, db, eventKey(0, ac, 2))
		flipLastByte(t, db, snapshotKey(0, bc))
		flipLastByte(t, db, dueKey(0, unix(1).UnixNano(), cc, "t"))
		flipLastByte(t, db, timerKey(0, cc, "t"))
	})

	s = openT(t, fs, "/data")
	defer closeT(t, s)
	for _, tc := range []struct {
		actor ActorKey
		words []string
	}{
		{a, []string{"event", "user/42", "seq 2", "checksum"}},
		{b, []string{"snapshot", "user/43", "checksum"}},
	} {
		_, err := s.Load(tc.actor)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load(%s) = %v, want ErrCorrupt", tc.actor, err)
		}
		for _, w := range tc.words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	}
	if _, err := s.DueTimers(unix(10), 0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "user/44") {
		t.Errorf("DueTimers = %v, want ErrCorrupt naming user/44", err)
	}
	// A write that must read a corrupt record fails alone, with ErrCorrupt;
	// writes to healthy actors go on.
	if err := s.Commit(context.Background(), &Write{Actor: c, Timers: []TimerChange{{Name: "t", Cancel: true}}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("cancel of corrupt timer = %v, want ErrCorrupt", err)
	}
	if err := s.Commit(context.Background(), events(b, 3, 3)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("write after corrupt snapshot = %v, want ErrCorrupt", err)
	}
	commitT(t, s, events(a, 4, 4))
}

func TestJournalGapIsCorrupt(t *testing.T) {
	fs := vfs.NewMem()
	a := ActorKey{Kind: "k", ID: "1"}
	s := openT(t, fs, "/data")
	commitT(t, s, events(a, 1, 4))
	closeT(t, s)
	plant(t, fs, "/data", func(db *pebble.DB) {
		if err := db.Delete(eventKey(0, encodeActor(a), 3), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	s = openT(t, fs, "/data")
	defer closeT(t, s)
	if _, err := s.Load(a); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "jumps from seq 2 to 4") {
		t.Errorf("Load = %v, want ErrCorrupt about the gap", err)
	}
}

func TestVersionMismatch(t *testing.T) {
	fs := vfs.NewMem()
	closeT(t, openT(t, fs, "/data"))
	plant(t, fs, "/data", func(db *pebble.DB) {
		if err := db.Set(versionKey(), []byte("ward-store/99"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	_, err := Open("/data", Options{FS: fs})
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), `"ward-store/99"`) || !strings.Contains(err.Error(), `"`+formatVersion+`"`) {
		t.Errorf("Open = %v, want ErrVersion naming both versions", err)
	}

	// A pebble database with data but no version key is not ours to stamp.
	plant(t, fs, "/other", func(db *pebble.DB) {
		if err := db.Set([]byte("foreign"), []byte("x"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := Open("/other", Options{FS: fs}); !errors.Is(err, ErrVersion) {
		t.Errorf("Open(foreign db) = %v, want ErrVersion", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "/data")
	_, err := Open("/data", Options{FS: fs})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another ward process holds the data directory") {
		t.Errorf("second Open (mem) = %v, want ErrLocked", err)
	}
	closeT(t, s)
	closeT(t, openT(t, fs, "/data")) // released on Close

	dir := t.TempDir()
	s = openT(t, nil, dir)
	defer closeT(t, s)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open (disk, same process) = %v, want ErrLocked", err)
	}
	// Another process, which is what the LOCK file is for.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOpenLocked$")
	cmd.Env = append(os.Environ(), "WARD_PERSIST_HELPER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("helper process: %v\n%s", err, out)
	}
}

// TestHelperOpenLocked runs in a child process of TestSecondOpenIsLocked.
func TestHelperOpenLocked(t *testing.T) {
	dir := os.Getenv("WARD_PERSIST_HELPER_DIR")
	if dir == "" {
		t.Skip("helper for TestSecondOpenIsLocked")
	}
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open from another process = %v, want ErrLocked", err)
	}
	t.Log(err)
}

// TestDamagedFiles overwrites pebble's own files on a real disk: Open or Load
// must fail with an error, never panic or return wrong data silently.
func TestDamagedFiles(t *testing.T) {
	setup := func(t *testing.T) (string, ActorKey) {
		dir := t.TempDir()
		s := openT(t, nil, dir)
		a := ActorKey{Kind: "k", ID: "1"}
		for i := uint64(1); i <= 200; i++ {
			commitT(t, s, events(a, i, i))
		}
		if err := s.db.Flush(); err != nil { // move the data into an sstable
			t.Fatal(err)
		}
		closeT(t, s)
		return dir, a
	}
	files := func(t *testing.T, dir, pattern string) []string {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil || len(m) == 0 {
			t.Fatalf("no %s in %s: %v", pattern, dir, err)
		}
		return m
	}
	garbage := func(t *testing.T, path string, at int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		if at < 0 {
			at = st.Size() / 2
		}
		if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 64)), at); err != nil {
			t.Fatal(err)
		}
	}
	openOrLoad := func(dir string, a ActorKey) error {
		s, err := Open(dir, Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Load(a)
		return err
	}

	t.Run("manifest", func(t *testing.T) {
		dir, a := setup(t)
		for _, m := range files(t, dir, "MANIFEST-*") {
			garbage(t, m, 0)
		}
		err := openOrLoad(dir, a)
		if err == nil {
			t.Fatal("opened a store with a garbage MANIFEST")
		}
		t.Logf("error: %v", err)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("error is not ErrCorrupt: %v", err)
		}
		if !strings.Contains(err.Error(), dir) {
			t.Errorf("error does not name the directory: %v", err)
		}
	})
	t.Run("sstable", func(t *testing.T) {
		dir, a := setup(t)
		for _, m := range files(t, dir, "*.sst") {
			garbage(t, m, -1)
		}
		err := openOrLoad(dir, a)
		if err == nil {
			t.Fatal("read a garbage sstable without error")
		}
		t.Logf("error: %v", err)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("error is not ErrCorrupt: %v", err)
		}
	})
	t.Run("truncated manifest", func(t *testing.T) {
		dir, a := setup(t)
		for _, m := range files(t, dir, "MANIFEST-*") {
			if err := os.Truncate(m, 10); err != nil {
				t.Fatal(err)
			}
		}
		err := openOrLoad(dir, a)
		if err == nil {
			t.Fatal("opened a store with a truncated MANIFEST")
		}
		t.Logf("error: %v", err)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("error is not ErrCorrupt: %v", err)
		}
	})
}
