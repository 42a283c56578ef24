package platform

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// kafkaConstructor is the one file allowed to call kgo.NewClient.
const kafkaConstructor = "platform/kafka.go"

// TestKafkaClientsUseOneConstructor: every Kafka client of the project,
// tests and tools included, is built by NewKafkaClient, so all refresh
// metadata alike (a processor built its own and saw new partitions only
// after 5 minutes).
func TestKafkaClientsUseOneConstructor(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	found, err := directKafkaClients(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("kgo.NewClient outside %s; build Kafka clients with platform.NewKafkaClient (extra kgo options go after the logger):\n  %s",
			kafkaConstructor, strings.Join(found, "\n  "))
	}
}

// The guard finds calls however kgo is imported, and nothing else.
func TestDirectKafkaClientsFindsCalls(t *testing.T) {
	root := t.TempDir()
	write := func(path, src string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const imp = "import kgo \"github.com/twmb/franz-go/pkg/kgo\"\n"
	write("platform/kafka.go", "package platform\n"+imp+"func New() { kgo.NewClient() }\n")
	write("a/plain.go", "package a\n"+imp+"\nfunc f() {\n\tkgo.NewClient(kgo.SeedBrokers())\n}\n")
	write("a/plain_test.go", "package a\n"+imp+"var newClient = kgo.NewClient\n")
	write("b/alias.go", "package b\nimport franz \"github.com/twmb/franz-go/pkg/kgo\"\nfunc f() { franz.NewClient() }\n")
	write("c/dot.go", "package c\nimport . \"github.com/twmb/franz-go/pkg/kgo\"\nfunc f() { NewClient() }\nfunc g(x y) { x.NewClient() }\n")
	// Not calls of kgo.NewClient: a comment, another package's NewClient.
	write("d/other.go", "package d\nimport kgo \"example.com/kgo\"\n// kgo.NewClient( in a comment\nfunc f() { kgo.NewClient() }\n")
	write("vendor/x/x.go", "package x\n"+imp+"func f() { kgo.NewClient() }\n")
	write("e/tmp/x.go", "package x\n"+imp+"func f() { kgo.NewClient() }\n")
	found, err := directKafkaClients(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/plain.go:5", "a/plain_test.go:3", "b/alias.go:3", "c/dot.go:3"}
	if !slices.Equal(found, want) {
		t.Errorf("found %q, want %q", found, want)
	}
}

// moduleRoot is the nearest directory at or above the working directory
// (the package's, under go test) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// directKafkaClients returns file:line, relative to root and sorted, of
// every reference to franz-go's kgo.NewClient in the .go files under root,
// except in kafkaConstructor. It skips vendor/ and tmp/ (copies of others'
// code, scratch), and what the go tool ignores: testdata and names that
// start with . or _.
func directKafkaClients(root string) ([]string, error) {
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "vendor" || name == "tmp" || name == "testdata" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !strings.HasSuffix(name, ".go") || rel == kafkaConstructor {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, pos := range newClientRefs(f) {
			found = append(found, rel+":"+strconv.Itoa(fset.Position(pos).Line))
		}
		return nil
	})
	slices.Sort(found)
	return found, err
}

// newClientRefs returns where f refers to kgo.NewClient, under whatever
// name f imports kgo.
func newClientRefs(f *ast.File) []token.Pos {
	const kgoPath = "github.com/twmb/franz-go/pkg/kgo"
	name := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == kgoPath {
			name = "kgo"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	if name == "" || name == "_" {
		return nil
	}
	var refs []token.Pos
	var visit func(n ast.Node) bool
	visit = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && x.Name == name && n.Sel.Name == "NewClient" {
				refs = append(refs, n.Pos())
				return false
			}
			// Look into X only: a selected name (other.NewClient) is not
			// the dot-imported one.
			ast.Inspect(n.X, visit)
			return false
		case *ast.Ident:
			if name == "." && n.Name == "NewClient" {
				refs = append(refs, n.Pos())
			}
		}
		return true
	}
	ast.Inspect(f, visit)
	return refs
}
