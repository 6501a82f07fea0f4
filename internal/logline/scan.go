package logline

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// kind is what a field's value was in the JSON line; it decides how the
// value is printed.
type kind uint8

const (
	kindString  kind = iota // decoded text, quoted when it needs it
	kindNumber              // a JSON number, printed as written
	kindLiteral             // true, false or null, printed as written
	kindArray               // a flat array, printed compact
)

// span is a slice of event.text.
type span struct{ from, to int }

type field struct {
	key, val span
	kind     kind
}

// event is one JSON line taken apart: every decoded key and value is
// appended to text, and fields point into it, so that taking a line apart
// allocates nothing once text and fields have grown.
type event struct {
	text   []byte
	fields []field
}

func (e *event) bytes(s span) []byte { return e.text[s.from:s.to] }

// parse takes apart p if it is one flat JSON object (values: strings,
// numbers, true, false, null, flat arrays of those that encoding/json
// writes back unchanged) followed only by white space. It says false for
// anything else, valid JSON or not, which the caller hands to
// zerolog.ConsoleWriter instead; so whatever it accepts must be JSON that
// encoding/json accepts and decodes to the same keys and values.
func (e *event) parse(p []byte) bool {
	e.text, e.fields = e.text[:0], e.fields[:0]
	if len(p) == 0 || p[0] != '{' {
		return false
	}
	i := skipSpace(p, 1)
	if i < len(p) && p[i] == '}' {
		return onlySpace(p[i+1:])
	}
	for {
		var f field
		next, ok := e.member(p, i, &f)
		if !ok {
			return false
		}
		e.fields = append(e.fields, f)
		i = skipSpace(p, next)
		if i >= len(p) {
			return false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return onlySpace(p[i+1:])
		default:
			return false
		}
	}
}

// member reads `"key": value` at p[i].
func (e *event) member(p []byte, i int, f *field) (int, bool) {
	if i >= len(p) || p[i] != '"' {
		return 0, false
	}
	key, i, ok := e.str(p, i)
	if !ok {
		return 0, false
	}
	i = skipSpace(p, i)
	if i >= len(p) || p[i] != ':' {
		return 0, false
	}
	f.key = key
	return e.value(p, skipSpace(p, i+1), f)
}

func (e *event) value(p []byte, i int, f *field) (int, bool) {
	if i >= len(p) {
		return 0, false
	}
	var end int
	var ok bool
	switch c := p[i]; {
	case c == '"':
		f.kind = kindString
		f.val, end, ok = e.str(p, i)
		return end, ok
	case c == '[':
		f.kind = kindArray
		f.val, end, ok = e.array(p, i)
		return end, ok
	case c == '-' || isDigit(c):
		f.kind = kindNumber
		end, ok = number(p, i)
	default:
		f.kind = kindLiteral
		end, ok = literal(p, i)
	}
	if ok {
		f.val = e.add(p[i:end])
	}
	return end, ok
}

func (e *event) add(b []byte) span {
	from := len(e.text)
	e.text = append(e.text, b...)
	return span{from, len(e.text)}
}

// str decodes the JSON string whose opening quote is p[i] onto text, as
// encoding/json decodes it: escapes resolved, a \u surrogate pair joined,
// a lone surrogate and every byte of invalid UTF-8 turned into U+FFFD.
// A raw control character or an unknown escape is not JSON: false.
func (e *event) str(p []byte, i int) (span, int, bool) {
	from := len(e.text)
	i++
	for i < len(p) {
		// Copy the run of plain ASCII at once.
		j := i
		for j < len(p) && p[j] >= ' ' && p[j] < utf8.RuneSelf && p[j] != '"' && p[j] != '\\' {
			j++
		}
		e.text = append(e.text, p[i:j]...)
		i = j
		if i >= len(p) {
			break
		}
		switch c := p[i]; {
		case c == '"':
			return span{from, len(e.text)}, i + 1, true
		case c == '\\':
			var ok bool
			if i, ok = e.escape(p, i); !ok {
				return span{}, 0, false
			}
		case c < ' ':
			return span{}, 0, false
		default:
			r, n := utf8.DecodeRune(p[i:])
			if r == utf8.RuneError && n == 1 {
				e.text = utf8.AppendRune(e.text, utf8.RuneError)
			} else {
				e.text = append(e.text, p[i:i+n]...)
			}
			i += n
		}
	}
	return span{}, 0, false
}

// escape decodes the escape sequence at p[i] (a backslash).
func (e *event) escape(p []byte, i int) (int, bool) {
	if i+1 >= len(p) {
		return 0, false
	}
	var b byte
	switch c := p[i+1]; c {
	case '"', '\\', '/':
		b = c
	case 'b':
		b = '\b'
	case 'f':
		b = '\f'
	case 'n':
		b = '\n'
	case 'r':
		b = '\r'
	case 't':
		b = '\t'
	case 'u':
		return e.unicode(p, i)
	default:
		return 0, false
	}
	e.text = append(e.text, b)
	return i + 2, true
}

// unicode decodes \uXXXX at p[i], and the low half after it when it is the
// high half of a surrogate pair.
func (e *event) unicode(p []byte, i int) (int, bool) {
	r := hex4(p, i)
	if r < 0 {
		return 0, false
	}
	i += 6
	if utf16.IsSurrogate(r) {
		if pair := utf16.DecodeRune(r, hex4(p, i)); pair != unicode.ReplacementChar {
			r = pair
			i += 6
		} else {
			r = unicode.ReplacementChar
		}
	}
	e.text = utf8.AppendRune(e.text, r)
	return i, true
}

// hex4 is the rune of \uXXXX at p[i], or -1.
func hex4(p []byte, i int) rune {
	if len(p)-i < 6 || p[i] != '\\' || p[i+1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range p[i+2 : i+6] {
		switch {
		case isDigit(c):
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// array copies a flat JSON array at p[i] onto text without its white
// space: that is how json.Marshal writes back what encoding/json decoded,
// as long as every element is written back unchanged (see element).
func (e *event) array(p []byte, i int) (span, int, bool) {
	from := len(e.text)
	e.text = append(e.text, '[')
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == ']' {
		e.text = append(e.text, ']')
		return span{from, len(e.text)}, i + 1, true
	}
	for {
		end, ok := e.element(p, i)
		if !ok {
			return span{}, 0, false
		}
		i = skipSpace(p, end)
		if i >= len(p) || (p[i] != ',' && p[i] != ']') {
			return span{}, 0, false
		}
		e.text = append(e.text, p[i])
		if p[i] == ']' {
			return span{from, len(e.text)}, i + 1, true
		}
		i = skipSpace(p, i+1)
	}
}

// element copies an array element that zerolog.InterfaceMarshalFunc
// (encoding/json without HTML escaping) writes back byte for byte: a
// number, a literal, or a string without escapes (see plainString).
func (e *event) element(p []byte, i int) (int, bool) {
	if i >= len(p) {
		return 0, false
	}
	var end int
	var ok bool
	switch c := p[i]; {
	case c == '"':
		end, ok = plainString(p, i)
	case c == '-' || isDigit(c):
		end, ok = number(p, i)
	default:
		end, ok = literal(p, i)
	}
	if ok {
		e.text = append(e.text, p[i:end]...)
	}
	return end, ok
}

// plainString is the end of the string at p[i] if encoding/json writes it
// back as it is: printable ASCII or valid UTF-8, no escape, no DEL, no
// U+2028 or U+2029 (which it escapes).
func plainString(p []byte, i int) (int, bool) {
	for j := i + 1; j < len(p); {
		c := p[j]
		switch {
		case c == '"':
			return j + 1, true
		case c < ' ' || c == '\\' || c == 0x7f:
			return 0, false
		case c < utf8.RuneSelf:
			j++
			continue
		}
		r, n := utf8.DecodeRune(p[j:])
		if (r == utf8.RuneError && n == 1) || r == '\u2028' || r == '\u2029' {
			return 0, false
		}
		j += n
	}
	return 0, false
}

// number is the end of the JSON number at p[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(p []byte, i int) (int, bool) {
	if p[i] == '-' {
		i++
	}
	switch {
	case i < len(p) && p[i] == '0':
		i++
	case i < len(p) && '1' <= p[i] && p[i] <= '9':
		i = digits(p, i)
	default:
		return 0, false
	}
	if i < len(p) && p[i] == '.' {
		j := digits(p, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		j := digits(p, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(p []byte, i int) int {
	for i < len(p) && isDigit(p[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func literal(p []byte, i int) (int, bool) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(p)-i >= len(lit) && string(p[i:i+len(lit)]) == lit {
			return i + len(lit), true
		}
	}
	return 0, false
}

// skipSpace skips JSON's white space: space, tab, CR, LF.
func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

func onlySpace(p []byte) bool { return skipSpace(p, 0) == len(p) }
