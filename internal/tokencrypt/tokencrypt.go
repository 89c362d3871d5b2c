// Package tokencrypt encrypts OAuth tokens at rest with AES-256-GCM under a
// keyring of one current key and any number of older, still-readable keys.
//
// A stored value is text, so it fits the existing token columns:
//
//	enc:v1:<keyid>:<base64url(nonce || ciphertext || tag)>
//
// The key id in the value says which key decrypts it, so keys rotate without a
// flag day: put the new key first, keep the old one after it, re-encrypt
// (NeedsRekey tells which values still need it), then drop the old key. The
// caller's aad (for example "fitbit_users.refresh_token:42") is authenticated
// together with the version and key id, so a ciphertext copied to another row,
// column or key id fails to decrypt instead of handing one participant's grant
// to another.
//
// Values without the "enc:" prefix are legacy plaintext from before a key was
// configured: Decrypt returns them unchanged so they stay usable and get
// encrypted on their next save. A nil *Keyring means "no key configured".
//
// The package imports only the standard library and never puts key material,
// plaintext or a ciphertext body into an error string.
package tokencrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Format constants. A contract: values written by one release are read by the next.
const (
	// Prefix marks an encrypted value; anything else is legacy plaintext.
	Prefix = "enc:"
	// versionV1 is AES-256-GCM with a random 96-bit nonce, key id in clear.
	versionV1 = "v1"
	headerV1  = Prefix + versionV1 + ":"
	// KeySize is the key length in bytes (AES-256).
	KeySize = 32
	// gcmOverhead is the 12-byte nonce plus the 16-byte tag that every v1 body carries.
	gcmOverhead = 12 + 16
	// maxStored bounds what Decrypt will look at; OAuth tokens are a few KB at most, so a
	// larger value is corruption and not worth decoding.
	maxStored = 1 << 20
)

// Errors, for errors.Is. Every error from ParseKeys, Encrypt and Decrypt wraps one of them.
var (
	// ErrNoKey: no key is configured (nil or empty Keyring), so nothing can be encrypted and
	// encrypted values cannot be read.
	ErrNoKey = errors.New("no token encryption key configured")
	// ErrUnknownKey: the value names a key id that is not in the keyring.
	ErrUnknownKey = errors.New("token encrypted under a key that is not in the keyring")
	// ErrCorrupt: the value is not a readable v1 ciphertext for this aad: malformed, modified,
	// copied from another row or column, or encrypted under a different key with the same id.
	ErrCorrupt = errors.New("encrypted token is corrupt or does not belong here")
	// ErrBadKeySpec: ParseKeys rejected the key specification.
	ErrBadKeySpec = errors.New("bad token key")
)

// keyAdvice tells an operator how to make a valid key; it is appended to key errors.
const keyAdvice = "generate one with: head -c 32 /dev/urandom | base64"

// key is one entry of a keyring. It holds only the ready AEAD, never the raw bytes, so
// nothing printable by reflection (fmt's %+v) contains the key.
type key struct {
	id   string
	aead cipher.AEAD // NewGCMWithRandomNonce: Seal prepends a fresh nonce, Open strips it
}

// Keyring is a current key, used for every Encrypt, plus older keys that Decrypt still
// accepts during a rotation. A nil or zero Keyring means no key is configured. A Keyring is
// immutable after ParseKeys and safe for concurrent use.
type Keyring struct {
	keys []key // keys[0] is current
}

// ParseKeys parses a key specification: the value of SYNC_TOKEN_KEY, or the content of
// the file named by SYNC_TOKEN_KEY_FILE.
//
// Keys are separated by commas or newlines; the first is current and the others stay
// readable. Each is "id:base64" or bare base64 (its id is then the first 8 hex digits of
// the SHA-256 of the raw key, so `base64 -d | sha256sum | cut -c1-8` reproduces it). Base64
// may be standard or URL-safe, padded or not, and must decode to 32 bytes. Blank entries
// and '#' comments (to the end of the line) are ignored.
//
// Errors wrap ErrBadKeySpec, name keys by position ("key 2") and never contain key
// material; callers prefix the source, e.g. "SYNC_TOKEN_KEY: key 2 is 16 bytes, want 32".
func ParseKeys(spec string) (*Keyring, error) {
	entries, err := parseSpec(spec)
	if err != nil {
		return nil, err
	}
	k := &Keyring{keys: make([]key, 0, len(entries))}
	for _, e := range entries {
		block, err := aes.NewCipher(e.raw)
		if err != nil { // unreachable: the length was checked
			return nil, specErrorf("key %d: %v", e.n, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, specErrorf("key %d: %v", e.n, err)
		}
		clear(e.raw) // the AEAD has its own copy of the schedule; do not keep a second one
		k.keys = append(k.keys, key{id: e.id, aead: aead})
	}
	return k, nil
}

// GenerateKey returns a new random 32-byte key in standard base64, ready for
// SYNC_TOKEN_KEY.
func GenerateKey() (string, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// empty reports whether no key is configured; it is how a nil Keyring works.
func (k *Keyring) empty() bool { return k == nil || len(k.keys) == 0 }

// CurrentID returns the id of the key Encrypt uses, or "" when no key is configured.
func (k *Keyring) CurrentID() string {
	if k.empty() {
		return ""
	}
	return k.keys[0].id
}

// IDs returns the ids of all keys, current first (nil when no key is configured). Ids are
// not secret: they are for status output and rotation advice.
func (k *Keyring) IDs() []string {
	if k.empty() {
		return nil
	}
	ids := make([]string, len(k.keys))
	for i, e := range k.keys {
		ids[i] = e.id
	}
	return ids
}

// String describes the keyring by key ids only, so printing one never leaks a key.
func (k *Keyring) String() string {
	if k.empty() {
		return "tokencrypt.Keyring(no key)"
	}
	return fmt.Sprintf("tokencrypt.Keyring(current=%s, keys=%s)", k.keys[0].id, strings.Join(k.IDs(), ","))
}

// GoString is String, for %#v.
func (k *Keyring) GoString() string { return k.String() }

// LogValue logs the key ids only.
func (k *Keyring) LogValue() slog.Value { return slog.StringValue(k.String()) }

// lookup returns the key with the given id.
func (k *Keyring) lookup(id string) (key, bool) {
	for _, e := range k.keys {
		if e.id == id {
			return e, true
		}
	}
	return key{}, false
}

// additionalData is what GCM authenticates besides the plaintext: the header (version
// and key id) and the caller's aad. The header ends at the third ':' and ids cannot
// contain ':', so the concatenation is unambiguous.
func additionalData(header, aad string) []byte {
	b := make([]byte, 0, len(header)+len(aad))
	b = append(b, header...)
	return append(b, aad...)
}

// Encrypt encrypts plaintext under the current key, bound to aad (use the row and column,
// e.g. "fitbit_users.refresh_token:42"; the same aad must be given to Decrypt). The empty
// string stays empty: it is how the columns say "no token", and there is nothing to hide.
// A nil Keyring returns ErrNoKey.
func (k *Keyring) Encrypt(plaintext, aad string) (string, error) {
	if k.empty() {
		return "", ErrNoKey
	}
	if plaintext == "" {
		return "", nil
	}
	cur := k.keys[0]
	header := headerV1 + cur.id + ":"
	sealed := cur.aead.Seal(nil, nil, []byte(plaintext), additionalData(header, aad))
	return header + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// IsEncrypted reports whether s is an encrypted value (has the "enc:" prefix) rather than
// legacy plaintext. Google tokens never start with "enc:".
func IsEncrypted(s string) bool { return strings.HasPrefix(s, Prefix) }

// KeyID returns the key id named by an encrypted v1 value, for rotation reports; ok is
// false for plaintext and malformed values.
func KeyID(stored string) (id string, ok bool) {
	id, _, err := split(stored)
	return id, err == nil
}

// split parses "enc:v1:<id>:<body>" without decoding the body.
func split(stored string) (id, body string, err error) {
	rest, ok := strings.CutPrefix(stored, Prefix)
	if !ok {
		return "", "", fmt.Errorf("%w: not encrypted", ErrCorrupt)
	}
	version, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", fmt.Errorf("%w: no version", ErrCorrupt)
	}
	if version != versionV1 {
		if validID(version) {
			return "", "", fmt.Errorf("%w: unsupported format version %q (written by a newer sync-all?)", ErrCorrupt, version)
		}
		return "", "", fmt.Errorf("%w: malformed format version", ErrCorrupt)
	}
	id, body, ok = strings.Cut(rest, ":")
	if !ok || !validID(id) {
		return "", "", fmt.Errorf("%w: malformed key id", ErrCorrupt)
	}
	return id, body, nil
}

// Decrypt returns the plaintext of a value written by Encrypt with the same aad. A value
// without the "enc:" prefix is legacy plaintext and is returned unchanged (check
// IsEncrypted or NeedsRekey to re-encrypt it on the next save). Errors wrap ErrNoKey (nil
// Keyring, encrypted value), ErrUnknownKey (its key id is not in the ring) or ErrCorrupt.
func (k *Keyring) Decrypt(stored, aad string) (string, error) {
	if !IsEncrypted(stored) {
		return stored, nil
	}
	if len(stored) > maxStored {
		return "", fmt.Errorf("%w: %d bytes is too long for a token", ErrCorrupt, len(stored))
	}
	id, body, err := split(stored)
	if err != nil {
		return "", err
	}
	if k.empty() {
		return "", fmt.Errorf("%w: the token is encrypted under key %q: set SYNC_TOKEN_KEY or SYNC_TOKEN_KEY_FILE", ErrNoKey, id)
	}
	e, ok := k.lookup(id)
	if !ok {
		return "", fmt.Errorf("%w: key %q (keyring has %s): if it was rotated out, add the old key after the current one (SYNC_TOKEN_KEY=new,old) until `sync-all users rekey` has run",
			ErrUnknownKey, id, strings.Join(k.IDs(), ","))
	}
	sealed, err := decodeBody(body)
	if err != nil {
		return "", err
	}
	plain, err := e.aead.Open(nil, nil, sealed, additionalData(headerV1+id+":", aad))
	if err != nil {
		// GCM cannot tell these apart, and that is the point of it.
		return "", fmt.Errorf("%w: authentication failed under key %q (modified, copied from another row or column, or a different key with this id)", ErrCorrupt, id)
	}
	return string(plain), nil
}

// decodeBody decodes unpadded base64url strictly: encoding/base64 silently skips '\r' and
// '\n', and a canonical form keeps exactly one spelling per ciphertext.
func decodeBody(body string) ([]byte, error) {
	if strings.ContainsAny(body, "\r\n=") {
		return nil, fmt.Errorf("%w: malformed body", ErrCorrupt)
	}
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed body (not base64url)", ErrCorrupt)
	}
	if len(sealed) < gcmOverhead {
		return nil, fmt.Errorf("%w: body is %d bytes, shorter than nonce and tag", ErrCorrupt, len(sealed))
	}
	return sealed, nil
}

// NeedsRekey reports whether stored should be re-encrypted under the current key: it is
// legacy plaintext, or names another key, or is malformed (so a rekey pass surfaces it).
// It does not authenticate the value. It is false for "" (no token) and when no key is
// configured (there is nothing to rekey to).
func (k *Keyring) NeedsRekey(stored string) bool {
	if k.empty() || stored == "" {
		return false
	}
	id, ok := KeyID(stored)
	return !ok || id != k.keys[0].id
}
