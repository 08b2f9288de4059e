// Command testreport reads `go test -json` on stdin and prints a readable
// report: one line per package, the output of every failed or skipped test,
// and a closing "N passed, N failed, N skipped" line. It exits 1 if any test
// failed or was skipped, or a package did not build: a skipped test is never
// counted as passing. (A package without test files is listed, not failed.)
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	os.Exit(report(os.Stdin, os.Stdout))
}

func report(in io.Reader, out io.Writer) int {
	var passed, failed, skipped int
	outputs := map[string]*strings.Builder{} // package/test → output
	var problems []string
	badPackages := 0
	perPackage := map[string]int{} // passed tests (with subtests) per package
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line) // build errors and the like
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			if b.Len() < 64<<10 {
				b.WriteString(e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "skip" { // a package with no test files
					fmt.Fprintf(out, "?    %s [no test files]\n", e.Package)
					continue
				}
				status := map[string]string{"pass": "ok  ", "fail": "FAIL"}[e.Action]
				if e.Action == "fail" {
					badPackages++
					if b := outputs[key]; b != nil {
						fmt.Fprint(out, b.String())
					}
				}
				fmt.Fprintf(out, "%s %s %.1fs (%d passed)\n", status, e.Package, e.Elapsed, perPackage[e.Package])
				continue
			}
			switch e.Action {
			case "pass":
				passed++
				perPackage[e.Package]++
			case "fail":
				failed++
				problems = append(problems, "FAILED "+e.Package+" "+e.Test+"\n"+text(outputs[key]))
			case "skip":
				skipped++
				problems = append(problems, "SKIPPED "+e.Package+" "+e.Test+"\n"+text(outputs[key]))
			}
			delete(outputs, key)
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		fmt.Fprintln(out, p)
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || skipped > 0 || badPackages > 0 || passed == 0 {
		return 1
	}
	return 0
}

func text(b *strings.Builder) string {
	if b == nil {
		return ""
	}
	return b.String()
}
