package actors_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports are packages through which actor code could reach the
// wall clock, global randomness, I/O or the network.
var forbiddenImports = map[string]string{
	"math/rand":    "global randomness: use ctx.Entropy()",
	"math/rand/v2": "global randomness: use ctx.Entropy()",
	"crypto/rand":  "real randomness: use ctx.Entropy()",
	"os":           "I/O",
	"os/exec":      "I/O",
	"os/signal":    "I/O",
	"io/ioutil":    "I/O",
	"io/fs":        "I/O",
	"net":          "network I/O",
	"net/http":     "network I/O",
	"syscall":      "I/O",
	"unsafe":       "escapes the type system",
	"reflect":      "hides what the code does",
	"log":          "I/O (logging is the host's job)",
	"log/slog":     "I/O (logging is the host's job)",
	"sync":         "actors are single-threaded; the host serialises them",
	"sync/atomic":  "actors are single-threaded; the host serialises them",
	"runtime":      "host concern",
	"plugin":       "loads code",
}

// forbiddenCalls are selector calls on allowed packages that still read the
// wall clock or start concurrency.
var forbiddenCalls = map[string]bool{
	"time.Now": true, "time.Since": true, "time.Until": true, "time.Sleep": true,
	"time.After": true, "time.AfterFunc": true, "time.Tick": true,
	"time.NewTimer": true, "time.NewTicker": true,
}

// allowedOwn are this module's packages actor code may import.
func allowedOwn(path string) bool {
	return path == "github.com/wardhq/ward/protocol" ||
		path == "github.com/wardhq/ward/actors" ||
		strings.HasPrefix(path, "github.com/wardhq/ward/actors/")
}

func TestActorsArePure(t *testing.T) {
	problems := checkPurity(t, ".")
	for _, p := range problems {
		t.Error(p)
	}
}

// TestPurityCheckCatchesViolations feeds the checker a file that breaks
// every rule, so the check above cannot pass vacuously.
func TestPurityCheckCatchesViolations(t *testing.T) {
	dir := t.TempDir()
	src := `package bad

import (
	"math/rand"
	"time"
	"github.com/some/other"
	clock "time"
)

func f() {
	_ = rand.Int()
	_ = time.Now()
	_ = clock.Since(time.Time{})
	go func() {}()
	_ = other.X
}
`
	if err := writeFile(filepath.Join(dir, "bad.go"), src); err != nil {
		t.Fatal(err)
	}
	problems := checkPurity(t, dir)
	want := []string{`imports "math/rand"`, "time.Now", "time.Since", "go statement", `imports "github.com/some/other"`}
	joined := strings.Join(problems, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("checker missed %q; it reported:\n%s", w, joined)
		}
	}
}

func checkPurity(t *testing.T, root string) []string {
	t.Helper()
	var problems []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// actortest is test support (imported only by _test.go files), not
		// actor code.
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "actortest" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, ".pb.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		problems = append(problems, checkFile(fset, f)...)
		return nil
	})
	if err != nil {
		t.Fatalf("scan actors: %v", err)
	}
	return problems
}

func checkFile(fset *token.FileSet, f *ast.File) []string {
	var problems []string
	// local name -> import path, so renamed imports are still caught.
	names := map[string]string{}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		pos := fset.Position(imp.Pos())
		if why, bad := forbiddenImports[path]; bad {
			problems = append(problems, pos.String()+": imports "+strconv.Quote(path)+": "+why)
		}
		if strings.Contains(strings.SplitN(path, "/", 2)[0], ".") && !allowedOwn(path) {
			problems = append(problems, pos.String()+": imports "+strconv.Quote(path)+": actor code may import protocol/ and the standard library only")
		}
		name := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		names[name] = path
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			problems = append(problems, fset.Position(n.Pos()).String()+": go statement: actors never start goroutines")
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok {
				if path, ok := names[id.Name]; ok && forbiddenCalls[path+"."+n.Sel.Name] {
					problems = append(problems, fset.Position(n.Pos()).String()+": "+path+"."+n.Sel.Name+": use ctx.Now() / durable timers")
				}
			}
		}
		return true
	})
	return problems
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
