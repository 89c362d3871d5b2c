package tokencrypt

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Environment variables FromEnv reads.
const (
	EnvKey     = "SYNC_TOKEN_KEY"
	EnvKeyFile = "SYNC_TOKEN_KEY_FILE"
)

// maxIDLen bounds explicit key ids: short enough to read in a log, and far shorter than a
// base64 key (43+ characters), so an id can never be a key pasted in the wrong place.
const maxIDLen = 16

// specError is a ParseKeys error: it matches ErrBadKeySpec without repeating its text, so
// the message reads "SYNC_TOKEN_KEY: key 2 is 16 bytes, want 32 (...)".
type specError struct{ msg string }

func (e *specError) Error() string        { return e.msg }
func (e *specError) Is(target error) bool { return target == ErrBadKeySpec }

func specErrorf(format string, args ...any) error {
	return &specError{msg: fmt.Sprintf(format, args...)}
}

// entry is one parsed key before it becomes an AEAD.
type entry struct {
	n   int // 1-based position among the keys, for error messages
	id  string
	raw []byte
}

// validID reports whether s may be a key id: 1-16 of [A-Za-z0-9._-]. Only ids that pass
// are ever echoed in an error.
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// deriveID is the id of a raw key given without an explicit one: the first 8 hex digits of
// its SHA-256. Revealing 32 bits of a hash of a 256-bit random key costs nothing.
func deriveID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:4])
}

// parseSpec splits and decodes a key specification. See ParseKeys.
func parseSpec(spec string) ([]entry, error) {
	spec = strings.TrimPrefix(spec, "\ufeff") // a BOM from an editor
	multiline := strings.Contains(spec, "\n")
	var out []entry
	for lineNo, line := range strings.Split(spec, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 { // '#' is not in either base64 alphabet
			line = line[:i]
		}
		for _, field := range strings.Split(line, ",") {
			field = strings.TrimSpace(field)
			if field == "" {
				continue
			}
			n := len(out) + 1
			where := fmt.Sprintf("key %d", n)
			if multiline {
				where = fmt.Sprintf("key %d (line %d)", n, lineNo+1)
			}
			e, err := parseEntry(field)
			if err != nil {
				return nil, specErrorf("%s %v", where, err)
			}
			e.n = n
			for _, prev := range out {
				if subtle.ConstantTimeCompare(prev.raw, e.raw) == 1 {
					return nil, specErrorf("%s is the same key as key %d: list each key once", where, prev.n)
				}
				if prev.id == e.id {
					return nil, specErrorf("%s has the same id %q as key %d: give one an explicit id (\"id:base64\")", where, e.id, prev.n)
				}
			}
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, specErrorf("no key given: want one or more base64 32-byte keys separated by commas or newlines, current first (%s)", keyAdvice)
	}
	return out, nil
}

// parseEntry parses "id:base64" or bare base64. Its errors never include the field.
func parseEntry(field string) (entry, error) {
	var e entry
	b64 := field
	if id, rest, ok := strings.Cut(field, ":"); ok {
		id, rest = strings.TrimSpace(id), strings.TrimSpace(rest)
		if !validID(id) {
			return e, errors.New("has an invalid id before ':' (want 1-16 letters, digits, '.', '_' or '-')")
		}
		e.id, b64 = id, rest
	}
	raw, err := decodeKey(b64)
	if err != nil {
		return e, err
	}
	if len(raw) != KeySize {
		return e, fmt.Errorf("is %d bytes, want %d (%s)", len(raw), KeySize, keyAdvice)
	}
	if e.id == "" {
		e.id = deriveID(raw)
	}
	e.raw = raw
	return e, nil
}

// decodeKey accepts standard or URL-safe base64, padded or not. Mixing the two alphabets is
// an error rather than a guess.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("is empty after its id")
	}
	std, url := strings.ContainsAny(s, "+/"), strings.ContainsAny(s, "-_")
	if std && url {
		return nil, fmt.Errorf("is not valid base64 (mixes the standard and URL-safe alphabets; %s)", keyAdvice)
	}
	enc := base64.RawStdEncoding
	if url {
		enc = base64.RawURLEncoding
	}
	// Padding is optional; the decoder would also skip '\r' and '\n', which the caller has
	// already split on, so neither can smuggle anything in.
	unpadded := strings.TrimRight(s, "=")
	raw, err := enc.DecodeString(unpadded) // a Raw encoding also rejects '=' in the middle
	if err != nil || len(s)-len(unpadded) > 2 {
		return nil, fmt.Errorf("is not valid base64 (%s)", keyAdvice)
	}
	return raw, nil
}

// FromEnv builds the keyring from SYNC_TOKEN_KEY or the file named by SYNC_TOKEN_KEY_FILE.
// It returns (nil, nil) when neither is set: a nil Keyring means "no key configured", and
// whether that is acceptable (--allow-plaintext-tokens) is the caller's decision. Errors
// name the variable (and file), never the key.
func FromEnv(getenv func(string) string) (*Keyring, error) {
	val, file := getenv(EnvKey), getenv(EnvKeyFile)
	switch {
	case val != "" && file != "":
		return nil, specErrorf("both %s and %s are set: keep only one (the file is safer)", EnvKey, EnvKeyFile)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the cause (not found, permission denied), not the content
			}
			return nil, fmt.Errorf("%s: cannot read %s: %w", EnvKeyFile, file, err)
		}
		k, err := ParseKeys(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", EnvKeyFile, file, err)
		}
		return k, nil
	case val != "":
		k, err := ParseKeys(val)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKey, err)
		}
		return k, nil
	}
	return nil, nil
}
