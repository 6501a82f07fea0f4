// Package logcheck finds log lines whose message is built from
// non-constant text. Untrusted text (cluster names, SSH arguments, file
// names) must go into structured fields, which the log writer quotes and
// escapes; a message built from it could forge a line of its own with a
// newline. The check runs as a test over the whole module.
package logcheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// Finding is one log call whose message is not constant.
type Finding struct {
	Pos  token.Position
	Call string
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s", f.Pos, f.Call) }

// Check parses every non-test Go file under root and reports the calls
// of Msgf (always) and Msg whose argument is not a constant string.
func Check(root string) ([]Finding, error) {
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // by directory
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, files := range pkgs {
		consts := constStrings(files)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				switch sel.Sel.Name {
				case "Msgf":
					out = append(out, Finding{fset.Position(call.Pos()), "Msgf formats its message"})
				case "Msg":
					if len(call.Args) == 1 && !constant(call.Args[0], consts) {
						out = append(out, Finding{fset.Position(call.Pos()), "Msg with a message that is not a constant string"})
					}
				}
				return true
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Line < b.Line
	})
	return out, nil
}

// constStrings are the names of a package's constants.
func constStrings(files []*ast.File) map[string]bool {
	names := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					names[n.Name] = true
				}
			}
		}
	}
	return names
}

// constant reports whether e is a string literal, a package constant or a
// concatenation of them.
func constant(e ast.Expr, consts map[string]bool) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return e.Kind == token.STRING
	case *ast.Ident:
		return consts[e.Name]
	case *ast.ParenExpr:
		return constant(e.X, consts)
	case *ast.BinaryExpr:
		return e.Op == token.ADD && constant(e.X, consts) && constant(e.Y, consts)
	}
	return false
}
