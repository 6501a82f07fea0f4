// Package adminipc is corosync-qnetd's local administration interface: the
// AF_UNIX socket that corosync-qnetd-tool, pcs and crmsh talk to, with
// upstream's line protocol (qnetd-ipc.c, qnetd-ipc-cmd.c), its status and
// list output byte for byte, and corosync-qnetd-tool itself
// (corosync-qnetd-tool.c) with the same flags, messages and exit codes.
//
// The text is rendered from a Snapshot, a plain copy of the engine state
// taken in the engine goroutine, which other front ends (a status page)
// can reuse.
package adminipc

import "bytes"

// Lexer splits a request line into words as upstream's dynar_simple_lex
// (DYNAR_SIMPLE_LEX_TYPE_QUOTE) does: words are separated by space, \t,
// \v and \f; \r or \n ends the line; "..." quotes (a quote may start or
// end anywhere inside a word); a backslash outside quotes takes the next
// character literally; inside quotes only \\ and \" are escapes, any other
// backslash is kept. A backslash at the end of the input is dropped.
type Lexer struct {
	in  []byte
	pos int
	// Max is the largest token size including upstream's terminating NUL
	// (the receive buffer's size); 0 means no limit.
	Max int
}

// NewLexer returns a lexer over line.
func NewLexer(line []byte, max int) *Lexer { return &Lexer{in: line, Max: max} }

func isSpace(ch byte) bool {
	return ch == ' ' || ch == '\f' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\v'
}

// Next returns the next word; "" when the line is exhausted (upstream
// cannot tell that from an empty quoted word either). ok is false when the
// word does not fit in Max (upstream's allocation failure).
func (l *Lexer) Next() (tok string, ok bool) {
	var out []byte
	add := func(ch byte) bool {
		out = append(out, ch)
		return l.Max <= 0 || len(out) <= l.Max
	}
	size := len(l.in)
	pos := l.pos
	state := 1
	for state != 0 {
		var ch byte
		if pos < size {
			ch = l.in[pos]
		}
		switch state {
		case 1: // skip spaces; a line end stops everything
			switch {
			case pos >= size || ch == '\n' || ch == '\r':
				state = 0
			case isSpace(ch):
				pos++
			default:
				state = 2
			}
		case 2: // word
			switch {
			case pos >= size:
				state = 0
			case ch == '\\':
				pos++
				state = 3
			case ch == '"':
				pos++
				state = 4
			case isSpace(ch):
				state = 0
			default:
				pos++
				if !add(ch) {
					return "", false
				}
			}
		case 3: // backslash outside quotes
			if pos >= size || ch == '\n' || ch == '\r' {
				state = 0
			} else {
				pos++
				state = 2
				if !add(ch) {
					return "", false
				}
			}
		case 4: // inside quotes
			switch {
			case pos >= size:
				state = 0
			case ch == '\\':
				pos++
				state = 5
			case ch == '"':
				pos++
				state = 2
			case ch == '\n' || ch == '\r':
				state = 0
			default:
				pos++
				if !add(ch) {
					return "", false
				}
			}
		case 5: // backslash inside quotes
			switch {
			case pos >= size || ch == '\n' || ch == '\r':
				state = 0
			case ch == '\\' || ch == '"':
				pos++
				state = 4
				if !add(ch) {
					return "", false
				}
			default:
				pos++
				state = 4
				if !add('\\') || !add(ch) {
					return "", false
				}
			}
		}
	}
	// upstream appends a NUL terminator, which must fit too
	if l.Max > 0 && len(out)+1 > l.Max {
		return "", false
	}
	l.pos = pos
	return string(out), true
}

// cstr is s as C sees it: up to the first NUL byte. Upstream compares and
// prints words, cluster names and status lines as C strings.
func cstr(s string) string {
	if i := bytes.IndexByte([]byte(s), 0); i >= 0 {
		return s[:i]
	}
	return s
}

// Op is an IPC command.
type Op uint8

const (
	// OpNone is an empty line: "No command specified".
	OpNone Op = iota
	OpStatus
	OpList
	OpShutdown
	// OpUnknown carries the word in Command.Word.
	OpUnknown
	// OpTooLong: a word did not fit ("Command too long").
	OpTooLong
)

// Command is a parsed request line.
type Command struct {
	Op      Op
	Verbose bool
	// Cluster filters list output (exact, case-sensitive; "" = all).
	Cluster string
	// Word is the unknown command, as upstream prints it.
	Word string
}

// ParseCommand interprets one request line as upstream's
// qnetd_ipc_parse_line: keywords are case-insensitive; "status" looks at
// its second word only; "list" takes "verbose" and "cluster NAME" in any
// order and stops at the first other word; max is ipc_max_receive_size.
func ParseCommand(line []byte, max int) Command {
	lex := NewLexer(line, max)
	tok, ok := lex.Next()
	if !ok {
		return Command{Op: OpTooLong}
	}
	word := cstr(tok)
	switch {
	case word == "":
		return Command{Op: OpNone}
	case equalFold(word, "shutdown"):
		return Command{Op: OpShutdown}
	case equalFold(word, "status"):
		tok, ok := lex.Next()
		if !ok {
			return Command{Op: OpTooLong}
		}
		return Command{Op: OpStatus, Verbose: equalFold(cstr(tok), "verbose")}
	case equalFold(word, "list"):
		cmd := Command{Op: OpList}
		for {
			tok, ok := lex.Next()
			if !ok || cstr(tok) == "" {
				// upstream ends the loop on a NULL token too
				break
			}
			w := cstr(tok)
			if equalFold(w, "verbose") {
				cmd.Verbose = true
			} else if equalFold(w, "cluster") {
				name, ok := lex.Next()
				if !ok {
					return Command{Op: OpTooLong}
				}
				cmd.Cluster = cstr(name)
			} else {
				break
			}
		}
		return cmd
	}
	return Command{Op: OpUnknown, Word: word}
}

// equalFold is strcasecmp for ASCII keywords (the C locale).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// QuoteWord quotes s as the tool does (dynar_str_quote_cat): in double
// quotes, with " and \ escaped by a backslash. Only the part before a NUL
// byte is used.
func QuoteWord(s string) string {
	s = cstr(s)
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}
