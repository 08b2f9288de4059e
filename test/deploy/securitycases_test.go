package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// requiredCases are the cases of SECURITY-TESTS.md (the bad inputs and
// faults every release must survive) that have landed: T1–T77 and T80.
// T78 and T79 belong to the FAPI work and join this list when it lands.
func requiredCases() []int {
	var out []int
	for k := 1; k <= 77; k++ {
		out = append(out, k)
	}
	return append(out, 80)
}

// maxCase is the highest case number SECURITY-TESTS.md has.
const maxCase = 80

// caseName finds T-numbers in a test's name: "T52", "T13_T15", "T8 after";
// casesIn checks that no letter or digit is glued to either side.
var caseName = regexp.MustCompile(`T([0-9]{1,2})`)

// casesIn returns the case numbers name names.
func casesIn(name string) []int {
	alnum := func(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' }
	var out []int
	for _, m := range caseName.FindAllStringSubmatchIndex(name, -1) {
		if m[0] > 0 && alnum(name[m[0]-1]) || m[1] < len(name) && '0' <= name[m[1]] && name[m[1]] <= '9' {
			continue
		}
		k, _ := strconv.Atoi(name[m[2]:m[3]])
		out = append(out, k)
	}
	return out
}

// TestEverySecurityCaseHasANamedTest: each required case is named by a test
// function, a subtest (t.Run) or a table row (a string literal in a test
// file), not merely mentioned in a comment, so deleting the last test of a
// case fails here.
func TestEverySecurityCaseHasANamedTest(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	found := map[int][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".tools" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution) // comments dropped
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		ast.Inspect(f, func(n ast.Node) bool {
			var name string
			switch n := n.(type) {
			case *ast.FuncDecl:
				if strings.HasPrefix(n.Name.Name, "Test") {
					name = n.Name.Name
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					name, _ = strconv.Unquote(n.Value)
				}
			}
			for _, k := range casesIn(name) {
				if k >= 1 && k <= maxCase {
					found[k] = append(found[k], rel)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range requiredCases() {
		if len(found[k]) == 0 {
			t.Errorf("SECURITY-TESTS case T%d has no test named for it", k)
		}
	}
}

func TestCasesIn(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"T52_refused":                 "[52]",
		"T32_T68_provider":            "[32 68]",
		"T8 after":                    "[8]",
		"TestT13":                     "[]",
		"T123":                        "[]",
		"HTTP2":                       "[]",
		"T10)":                        "[10]",
		"refresh (T63); T64 and T65.": "[63 64 65]",
	} {
		got := casesIn(name)
		if "["+fmtInts(got)+"]" != want {
			t.Errorf("casesIn(%q) = %v, want %s", name, got, want)
		}
	}
}

func fmtInts(v []int) string {
	var b strings.Builder
	for i, n := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
