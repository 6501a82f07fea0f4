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
	w := word{max: l.Max}
	pos := l.pos
	// Every state stops, without taking the byte, at the end of the input
	// or of the line.
	for step := skipSpaces; step != nil && pos < len(l.in) && l.in[pos] != '\n' && l.in[pos] != '\r'; {
		var took bool
		step, took = step(&w, l.in[pos])
		if took {
			pos++
		}
		if w.full {
			return "", false
		}
	}
	// upstream appends a NUL terminator, which must fit too
	if l.Max > 0 && len(w.out)+1 > l.Max {
		return "", false
	}
	l.pos = pos
	return string(w.out), true
}

// word is the word being read; full when it outgrew max.
type word struct {
	out  []byte
	max  int
	full bool
}

func (w *word) add(ch ...byte) {
	w.out = append(w.out, ch...)
	w.full = w.max > 0 && len(w.out) > w.max
}

// lexStep is one state of the lexer: it looks at the next byte and returns
// the next state (nil: the word is over) and whether it took the byte.
type lexStep func(w *word, ch byte) (lexStep, bool)

func skipSpaces(_ *word, ch byte) (lexStep, bool) {
	if isSpace(ch) {
		return skipSpaces, true
	}
	return inWord, false
}

func inWord(w *word, ch byte) (lexStep, bool) {
	switch {
	case ch == '\\':
		return escaped, true
	case ch == '"':
		return quoted, true
	case isSpace(ch):
		return nil, false
	}
	w.add(ch)
	return inWord, true
}

// escaped: after a backslash outside quotes, any byte is taken literally.
func escaped(w *word, ch byte) (lexStep, bool) {
	w.add(ch)
	return inWord, true
}

func quoted(w *word, ch byte) (lexStep, bool) {
	switch ch {
	case '\\':
		return quotedEscape, true
	case '"':
		return inWord, true
	}
	w.add(ch)
	return quoted, true
}

// quotedEscape: inside quotes only \\ and \" are escapes; any other
// backslash is kept with the byte after it.
func quotedEscape(w *word, ch byte) (lexStep, bool) {
	if ch == '\\' || ch == '"' {
		w.add(ch)
	} else {
		w.add('\\', ch)
	}
	return quoted, true
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
