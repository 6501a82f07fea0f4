package status

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// MaxNameBytes is the longest cluster name shown as it is: on the page, in
// the history, in Home Assistant and in metric labels. A client may send
// a name of up to 65 kB, which every copy kept for display would repeat;
// corosync's own names are short (Proxmox allows 15 characters).
const MaxNameBytes = 64

// ShortName is a cluster name fit for showing: valid UTF-8 without control
// characters, at most MaxNameBytes long. A name that does not fit as it is
// keeps what can be shown of its start, with invalid bytes and control
// characters replaced, and ends in "…#" and a hash of the whole name, so
// that names that start alike stay apart.
func ShortName(name string) string {
	if len(name) <= MaxNameBytes && utf8.ValidString(name) && strings.IndexFunc(name, isControl) < 0 {
		return name
	}
	head := strings.ToValidUTF8(name[:min(len(name), MaxNameBytes)], "\uFFFD")
	head = strings.Map(func(r rune) rune {
		if isControl(r) {
			return '\uFFFD'
		}
		return r
	}, head)
	cut := min(len(head), MaxNameBytes-len("…#")-hashChars)
	for cut > 0 && cut < len(head) && !utf8.RuneStart(head[cut]) {
		cut--
	}
	return head[:cut] + "…#" + nameHash(name)
}

// hashChars is the length of nameHash.
const hashChars = 8

// nameHash is a short hash of a cluster name, for telling apart names that
// had to be shortened.
func nameHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:hashChars/2])
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }
