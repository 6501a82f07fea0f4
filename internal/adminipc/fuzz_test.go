package adminipc

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseCommand: a line from the local socket. Parsing never panics,
// and a word it reports is within the line's bounds.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"status \n", "status verbose\n", "list cluster \"pve\"\n", "shutdown\n",
		"list verbose cluster 'a b'\\\n", "\"unterminated", "list cluster \x00\n"} {
		f.Add([]byte(s), 4096)
	}
	f.Fuzz(func(t *testing.T, line []byte, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		cmd := ParseCommand(line, max)
		if len(cmd.Cluster) > len(line) {
			t.Fatalf("cluster %q longer than the line", cmd.Cluster)
		}
		_ = utf8.ValidString(cmd.Word)
	})
}
