package scenario

import (
	"fmt"
	"os"
	"strings"
)

// Block is one command block with its expected output.
type Block struct {
	Line     int
	Commands []string
	Want     string
	// Comment holds the '#' lines before the block, kept for rewrites.
	Comment []string
}

// File is a parsed scenario file.
type File struct {
	Path             string
	Blocks           []Block
	Trailer          []string
	SkipDifferential string
}

// Parse reads a scenario file.
func Parse(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path}
	lines := strings.Split(string(data), "\n")
	var cur *Block
	var comment []string
	inWant := false
	var want []string
	for i, raw := range lines {
		line := strings.TrimRight(raw, " \t\r")
		if strings.HasPrefix(line, "# differential: skip") {
			f.SkipDifferential = strings.TrimSpace(strings.TrimPrefix(line, "# differential: skip"))
		}
		switch {
		case inWant:
			if line == "" {
				cur.Want = strings.Join(want, "\n")
				f.Blocks = append(f.Blocks, *cur)
				cur, inWant, want = nil, false, nil
				continue
			}
			want = append(want, line)
		case line == "----":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: ---- without commands", path, i+1)
			}
			inWant = true
		case strings.HasPrefix(line, "#") || line == "":
			if cur != nil && line != "" {
				cur.Commands = append(cur.Commands, line)
				continue
			}
			if cur != nil && line == "" {
				return nil, fmt.Errorf("%s:%d: blank line inside a command block", path, i+1)
			}
			comment = append(comment, line)
		default:
			if cur == nil {
				cur = &Block{Line: i + 1, Comment: comment}
				comment = nil
			}
			cur.Commands = append(cur.Commands, line)
		}
	}
	if inWant {
		cur.Want = strings.Join(want, "\n")
		f.Blocks = append(f.Blocks, *cur)
	} else if cur != nil {
		return nil, fmt.Errorf("%s:%d: block without ---- and expected output", path, cur.Line)
	}
	f.Trailer = comment
	return f, nil
}

// Format renders the file with the given outputs in place of the expected ones.
func (f *File) Format(got []string) string {
	var b strings.Builder
	for i, bl := range f.Blocks {
		for _, c := range bl.Comment {
			b.WriteString(c + "\n")
		}
		for _, c := range bl.Commands {
			b.WriteString(c + "\n")
		}
		b.WriteString("----\n")
		out := bl.Want
		if i < len(got) {
			out = got[i]
		}
		if out != "" {
			b.WriteString(out + "\n")
		}
		b.WriteString("\n")
	}
	for _, c := range f.Trailer {
		if c != "" {
			b.WriteString(c + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}
