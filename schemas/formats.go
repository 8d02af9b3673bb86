package schemas

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// uuidFormat replaces the library's "uuid" format check, which splits the
// string into a fresh slice for every value: the schemas have 41 uuid
// members and the ingester checks every event's, so the split was the
// largest single cost of validation after the library's own bookkeeping.
// It accepts exactly what the library's check accepts: five groups of
// 8-4-4-4-12 hexadecimal digits, either case, separated by dashes (a test
// holds the two to the same answers).
var uuidFormat = &jsonschema.Format{Name: "uuid", Validate: validateUUID}

func validateUUID(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil // formats apply to strings only
	}
	if len(s) != 36 {
		return fmt.Errorf("want 36 characters (8-4-4-4-12 hexadecimal digits), got %d", utf8.RuneCountInString(s))
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("want '-' at character %d, got %s", utf8.RuneCountInString(s[:i])+1, runeAt(s, i))
			}
		default:
			if !isHexDigit(c) {
				return fmt.Errorf("non-hex character %s at character %d", runeAt(s, i), utf8.RuneCountInString(s[:i])+1)
			}
		}
	}
	return nil
}

// runeAt quotes the character that starts at byte i of s.
func runeAt(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return strconv.QuoteRune(r)
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
