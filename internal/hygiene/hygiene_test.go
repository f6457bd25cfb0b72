package hygiene

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// domain packages (relative to the module root) and what they must not import.
var domain = []string{
	"internal/access", "internal/attest", "internal/deploy", "internal/enroll", "internal/pki",
	"internal/provision", "internal/query", "internal/registry", "internal/sas", "internal/store",
	"internal/twin", "internal/edge/reconcile", "internal/telemetry", "internal/hubauth", "internal/hub",
	"internal/rollout",
}

var forbidden = []string{
	"net/http", "database/sql", "modernc.org/sqlite", "github.com/jackc/pgx",
	"github.com/wind-c/comqtt", "github.com/eclipse/paho", "github.com/coder/websocket",
}

type pkg struct {
	dir     string
	hasDoc  bool
	imports map[string][]string // import path -> files
	inits   []string
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func scan(t *testing.T) map[string]*pkg {
	t.Helper()
	root := moduleRoot(t)
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", "testdata", ".git", "third_party":
				// third_party holds upstream modules (their own go.mod), not ours.
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		p := pkgs[rel]
		if p == nil {
			p = &pkg{dir: rel, imports: map[string][]string{}}
			pkgs[rel] = p
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.hasDoc = true
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			p.imports[ip] = append(p.imports[ip], filepath.Base(path))
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "init" {
				p.inits = append(p.inits, filepath.Base(path))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func sorted(m map[string]*pkg) []*pkg {
	out := make([]*pkg, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dir < out[j].dir })
	return out
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range sorted(scan(t)) {
		if !p.hasDoc {
			t.Errorf("package %s has no package doc comment saying what it owns", p.dir)
		}
	}
}

func TestNoInitFunctions(t *testing.T) {
	for _, p := range sorted(scan(t)) {
		if len(p.inits) > 0 {
			t.Errorf("package %s has init() in %v: wire dependencies through constructors instead", p.dir, p.inits)
		}
	}
}

func TestDomainPackagesImportNoAdapters(t *testing.T) {
	pkgs := scan(t)
	for _, p := range sorted(pkgs) {
		isDomain := false
		for _, d := range domain {
			if p.dir == d {
				isDomain = true
			}
		}
		if !isDomain {
			continue
		}
		for ip, files := range p.imports {
			for _, f := range forbidden {
				if ip == f || strings.HasPrefix(ip, f+"/") {
					t.Errorf("domain package %s imports %s (in %v); adapters belong at the edges", p.dir, ip, files)
				}
			}
		}
	}
}
