package client

import (
	"fmt"
	"os"
	"strings"
)

// The story format: blocks of commands, a "----" line, the expected output, a
// blank line. Lines starting with '#' are comments. Commands:
//
//	cluster NAME [algorithm=ffsplit|lms|2nodelms|test] [tie_breaker=lowest|highest|ID] [kap=on|off] [heartbeat=MS]
//	connect IDS [ring=N.S] [algorithm=A] [tie_breaker=T] [kap=on|off]
//	                                 PREINIT, INIT, SET_OPTION(KAP) like the real client;
//	                                 the options override the cluster's for these nodes
//	duplicate ID                     a second connection with the same node id (PREINIT+INIT, then closed)
//	reinit ID                        INIT again on the node's open connection
//	join IDS nodes=LIST [ring=N.S]   connect + initial config + membership + quorum
//	config IDS nodes=LIST [changed] [version=V]
//	membership IDS ring=N.S nodes=LIST [heuristics=pass|fail]
//	split LIST|LIST... seq=S [heuristics=pass|fail]   membership per group, ring = lowest id of the group
//	quorum IDS nodes=LIST [quorate=yes|no]
//	heuristics IDS pass|fail
//	ask IDS | disconnect IDS | hold IDS | release IDS
//	wait MS                          let time pass (timers fire)
//	trace                            also print every message the nodes receive in this block
//	state                            also print each cluster's state (in-process only:
//	                                 "c1 is split: split into {1} and {2}; ...")
//
// Each command is in its own file, cmd_NAME.go.
//
// IDS are node ids of the current cluster separated by spaces or commas.
// Each node's message is sent and settled (replies answered, VOTE_INFO
// acknowledged) before the next node's, so outcomes are deterministic.
//
// Output: one line per error answer ("c1/2: server error 12 (...)"), the
// traced messages, then one line per cluster: "c1: 1=ACK 2=NACK 3=-"
// ("-" = no vote, "off" = disconnected).
//
// A file whose first lines contain "# differential: skip <reason>" runs
// only in-process (it tests a deliberate difference from upstream).

// Block is one command block with its expected output.
type Block struct {
	Line     int
	Commands []string
	Want     string
	// Comment holds the '#' lines before the block, kept for rewrites.
	Comment []string
}

// Story is a parsed story file.
type Story struct {
	Path             string
	Blocks           []Block
	Trailer          []string
	SkipDifferential string
}

// ParseStory reads a story file.
func ParseStory(path string) (*Story, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &Story{Path: path}
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
func (f *Story) Format(got []string) string {
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
