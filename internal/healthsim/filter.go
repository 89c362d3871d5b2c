package healthsim

import (
	"strings"
	"time"
)

// An AIP-160 subset, as the reference §5 describes it: comparisons joined by AND, only >= and <.

type filterToken struct {
	kind string // "ident", "string", "op", "and", "or"
	text string
}

func lexFilter(s string) ([]filterToken, *reply) {
	var out []filterToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				rp := invalidFilter("INVALID_DATA_POINT_FILTER_SYNTAX", "Unterminated string literal in filter")
				return nil, &rp
			}
			out = append(out, filterToken{"string", b.String()})
			i = j + 1
		case strings.ContainsRune("<>=!", rune(c)):
			j := i + 1
			if j < len(s) && s[j] == '=' {
				j++
			}
			out = append(out, filterToken{"op", s[i:j]})
			i = j
		case isIdentByte(c):
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			w := s[i:j]
			switch w {
			case "AND":
				out = append(out, filterToken{"and", w})
			case "OR":
				out = append(out, filterToken{"or", w})
			default:
				out = append(out, filterToken{"ident", w})
			}
			i = j
		default:
			rp := invalidFilter("INVALID_DATA_POINT_FILTER_SYNTAX", "Unexpected character "+string(c)+" in filter")
			return nil, &rp
		}
	}
	return out, nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == ':'
}

// dateFilter parses a filter on "<snake>.date" (daily types) into [lo, hi) bounds (nil = open).
func dateFilter(filter, snake string) (lo, hi *civil, bad *reply) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil, nil
	}
	toks, bad := lexFilter(filter)
	if bad != nil {
		return nil, nil, bad
	}
	fail := func(reason, msg string) (*civil, *civil, *reply) {
		rp := invalidFilter(reason, msg)
		return nil, nil, &rp
	}
	for i := 0; i < len(toks); {
		if i+3 > len(toks) {
			return fail("INVALID_DATA_POINT_FILTER_MISSING_TOKEN", "Incomplete comparison in filter")
		}
		member, op, val := toks[i], toks[i+1], toks[i+2]
		if member.kind != "ident" || op.kind != "op" || val.kind != "string" && val.kind != "ident" {
			return fail("INVALID_DATA_POINT_FILTER_SYNTAX", "Expected <member> <operator> <value> in filter")
		}
		typ, field, _ := strings.Cut(member.text, ".")
		switch {
		case strings.Contains(typ, "-"):
			return fail("INVALID_DATA_POINT_FILTER", "Data type names in filters are snake_case: "+strings.ReplaceAll(typ, "-", "_"))
		case typ != snake:
			return fail("INVALID_DATA_POINT_FILTER", "Filter data type "+typ+" does not match the collection "+snake)
		case field != "date":
			return fail("INVALID_DATA_POINT_FILTER_DATA_TYPE_MEMBER", "Unsupported filter member "+member.text+"; daily data types support "+snake+".date")
		case op.text != ">=" && op.text != "<":
			return fail("INVALID_DATA_POINT_FILTER_SYNTAX", "Unsupported operator "+op.text+"; use >= or <")
		}
		t, err := time.Parse(time.DateOnly, val.text)
		if err != nil {
			return fail("INVALID_FILTER_FORMAT", "Invalid date literal "+val.text+"; expected YYYY-MM-DD")
		}
		c := civil{t.Year(), t.Month(), t.Day()}
		if op.text == ">=" {
			if lo == nil || lo.before(c) {
				lo = &c
			}
		} else if hi == nil || c.before(*hi) {
			hi = &c
		}
		i += 3
		if i < len(toks) {
			switch toks[i].kind {
			case "and":
				i++
				if i == len(toks) {
					return fail("INVALID_DATA_POINT_FILTER_MISSING_TOKEN", "Filter ends with AND")
				}
			case "or":
				return fail("INVALID_DATA_POINT_FILTER_SYNTAX", "OR is supported only for sleep")
			default:
				return fail("INVALID_DATA_POINT_FILTER_SYNTAX", "Expected AND between comparisons")
			}
		}
	}
	return lo, hi, nil
}
