package logline

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// line renders one event. It lives in a pool: its buffers and the last
// time it formatted are reused by the next line.
type line struct {
	ev      event
	fields  []field // the event's fields other than the parts, sorted
	out     []byte
	timeRaw []byte // the last time field seen, and what it became
	timeOut []byte
	timeFmt string // zerolog.TimeFieldFormat when timeOut was made
	timeSet bool
}

// parts are the fields that ConsoleWriter prints first, in its default
// order (time, level, caller, message), without their names; -1: absent.
type parts struct{ time, level, caller, message int }

// format renders p as ConsoleWriter{NoColor: true, TimeFormat: layout}
// does, or says false when p takes a path that this does not reproduce.
func (l *line) format(p []byte, layout string) ([]byte, bool) {
	if !l.ev.parse(p) {
		return nil, false
	}
	ps, ok := l.split()
	if !ok {
		return nil, false
	}
	out, ok := l.appendTime(l.out[:0], ps.time, layout)
	if !ok {
		return nil, false
	}
	level, ok := l.level(ps.level)
	if !ok {
		return nil, false
	}
	if len(out) > 0 {
		out = append(out, ' ')
	}
	out = append(out, level...)
	msg, ok := l.message(ps.message)
	if !ok {
		return nil, false
	}
	if len(msg) > 0 {
		out = append(out, ' ')
		out = append(out, msg...)
	}
	out = append(l.appendFields(out), '\n')
	l.out = out
	return out, true
}

// split finds the parts and sorts the other fields by name. A name given
// twice (JSON's last one wins there) or a caller (printed relative to the
// working directory) is left to ConsoleWriter.
func (l *line) split() (parts, bool) {
	ps := parts{-1, -1, -1, -1}
	l.fields = l.fields[:0]
	for i, f := range l.ev.fields {
		var at *int
		switch string(l.ev.bytes(f.key)) {
		case zerolog.TimestampFieldName:
			at = &ps.time
		case zerolog.LevelFieldName:
			at = &ps.level
		case zerolog.CallerFieldName:
			at = &ps.caller
		case zerolog.MessageFieldName:
			at = &ps.message
		default:
			l.fields = append(l.fields, f)
			continue
		}
		if *at >= 0 {
			return ps, false
		}
		*at = i
	}
	if ps.caller >= 0 {
		return ps, false
	}
	text := l.ev.text
	slices.SortFunc(l.fields, func(a, b field) int {
		return bytes.Compare(text[a.key.from:a.key.to], text[b.key.from:b.key.to])
	})
	for i := 1; i < len(l.fields); i++ {
		if bytes.Equal(l.ev.bytes(l.fields[i-1].key), l.ev.bytes(l.fields[i].key)) {
			return ps, false
		}
	}
	return ps, true
}

// appendTime appends the time part: a string parsed with
// zerolog.TimeFieldFormat in local time and formatted with layout (as it
// was when it does not parse), "<nil>" when there is no time or it is
// neither a string nor a number. A number (a Unix time) is left to
// ConsoleWriter. The last result is kept: the lines of one second share
// it.
func (l *line) appendTime(out []byte, at int, layout string) ([]byte, bool) {
	if at < 0 {
		return append(out, "<nil>"...), true
	}
	f := l.ev.fields[at]
	switch f.kind {
	case kindNumber:
		return nil, false
	case kindString:
	default:
		return append(out, "<nil>"...), true
	}
	raw := l.ev.bytes(f.val)
	if !l.timeSet || !bytes.Equal(raw, l.timeRaw) || l.timeFmt != zerolog.TimeFieldFormat {
		l.timeFmt = zerolog.TimeFieldFormat
		l.timeRaw = append(l.timeRaw[:0], raw...)
		l.timeOut = l.timeOut[:0]
		if t, err := time.ParseInLocation(l.timeFmt, string(raw), time.Local); err == nil {
			l.timeOut = t.In(time.Local).AppendFormat(l.timeOut, layout)
		} else {
			l.timeOut = append(l.timeOut, raw...)
		}
		l.timeSet = true
	}
	return append(out, l.timeOut...), true
}

// levels are the levels ConsoleWriter abbreviates, in zerolog.ParseLevel's
// order of trying them.
var levels = [...]zerolog.Level{zerolog.TraceLevel, zerolog.DebugLevel, zerolog.InfoLevel,
	zerolog.WarnLevel, zerolog.ErrorLevel, zerolog.FatalLevel, zerolog.PanicLevel}

// level is the level part: the abbreviation of a level name (any case, as
// zerolog.ParseLevel reads it), "???" without a level. Anything else (an
// unknown name, a number) is left to ConsoleWriter.
func (l *line) level(at int) (string, bool) {
	if at < 0 {
		return "???", true
	}
	f := l.ev.fields[at]
	v := l.ev.bytes(f.val)
	switch f.kind {
	case kindLiteral:
		return "???", string(v) == "null"
	case kindString:
		for _, lvl := range levels {
			if strings.EqualFold(string(v), zerolog.LevelFieldMarshalFunc(lvl)) {
				s, ok := zerolog.FormattedLevels[lvl]
				return s, ok
			}
		}
	}
	return "", false
}

// message is the message part, printed as it is: a string or a number;
// nothing when it is absent, empty or null.
func (l *line) message(at int) ([]byte, bool) {
	if at < 0 {
		return nil, true
	}
	f := l.ev.fields[at]
	v := l.ev.bytes(f.val)
	switch f.kind {
	case kindString, kindNumber:
		return v, true
	case kindLiteral:
		return nil, string(v) == "null"
	}
	return nil, false
}

// appendFields appends the other fields, sorted by name, name=value
// separated by spaces; the error field comes first, and then a field with
// an empty name is not printed.
func (l *line) appendFields(out []byte) []byte {
	if len(l.fields) == 0 {
		return out
	}
	out = append(out, ' ')
	errAt := slices.IndexFunc(l.fields, func(f field) bool {
		return string(l.ev.bytes(f.key)) == zerolog.ErrorFieldName
	})
	first := true
	if errAt >= 0 {
		out = l.appendField(out, l.fields[errAt])
		first = false
	}
	for i, f := range l.fields {
		if i == errAt || (errAt >= 0 && f.key.from == f.key.to) {
			continue
		}
		if !first {
			out = append(out, ' ')
		}
		first = false
		out = l.appendField(out, f)
	}
	return out
}

func (l *line) appendField(out []byte, f field) []byte {
	out = append(out, l.ev.bytes(f.key)...)
	out = append(out, '=')
	v := l.ev.bytes(f.val)
	if f.kind == kindString && needsQuote(v) {
		return appendQuoted(out, v)
	}
	return append(out, v...)
}

// needsQuote: ConsoleWriter quotes a string value holding anything but
// printable ASCII, or a space, a backslash or a double quote.
func needsQuote(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == ' ' || c == '\\' || c == '"' {
			return true
		}
	}
	return false
}

// appendQuoted appends s as strconv.Quote writes it, without making a
// string of it.
func appendQuoted(out, s []byte) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); {
		// Copy the run of printable ASCII at once.
		j := i
		for j < len(s) && s[j] >= ' ' && s[j] < 0x7f && s[j] != '"' && s[j] != '\\' {
			j++
		}
		out = append(out, s[i:j]...)
		if i = j; i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			out = appendQuotedASCII(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = appendHexByte(out, c)
		case strconv.IsPrint(r):
			out = append(out, s[i:i+n]...)
		default:
			out = appendEscapedRune(out, r)
		}
		i += n
	}
	return append(out, '"')
}

func appendQuotedASCII(out []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(out, '\\', c)
	case '\a':
		return append(out, `\a`...)
	case '\b':
		return append(out, `\b`...)
	case '\f':
		return append(out, `\f`...)
	case '\n':
		return append(out, `\n`...)
	case '\r':
		return append(out, `\r`...)
	case '\t':
		return append(out, `\t`...)
	case '\v':
		return append(out, `\v`...)
	}
	if c < ' ' || c == 0x7f {
		return appendHexByte(out, c)
	}
	return append(out, c)
}

const hexDigits = "0123456789abcdef"

func appendHexByte(out []byte, c byte) []byte {
	return append(out, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
}

// appendEscapedRune writes a rune that is not printable as \uXXXX, or
// \UXXXXXXXX beyond the Basic Multilingual Plane.
func appendEscapedRune(out []byte, r rune) []byte {
	width, prefix := 4, byte('u')
	if r >= 0x10000 {
		width, prefix = 8, 'U'
	}
	out = append(out, '\\', prefix)
	for s := (width - 1) * 4; s >= 0; s -= 4 {
		out = append(out, hexDigits[(r>>uint(s))&0xf])
	}
	return out
}
