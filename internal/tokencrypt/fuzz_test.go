package tokencrypt

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// FuzzDecrypt feeds arbitrary stored values (what a corrupted or hostile row could hold) to
// Decrypt, NeedsRekey and KeyID: they must never panic, must fail only with the package's
// errors, must never echo the value's body, and must pass plaintext through unchanged.
func FuzzDecrypt(f *testing.F) {
	_, a, idA := testKey(1)
	_, b, idB := testKey(2)
	k := mustParse(f, a+","+b)
	old := mustParse(f, b)
	valid := mustEncrypt(f, k, token, aad42)
	body := strings.TrimPrefix(valid, "enc:v1:"+idA+":")
	for _, seed := range []string{
		valid, mustEncrypt(f, old, token, aad42), mustEncrypt(f, k, "x", ""), token, "", "enc", "enc:", "enc:v1",
		"enc:v1:", "enc:v1::", "enc:v1:" + idA + ":", "enc:v1:" + idB + ":" + body, "enc:v1:deadbeef:" + body,
		"enc:v2:" + idA + ":" + body, "enc:v1:" + idA + ":" + body + "=", "enc:v1:" + idA + ":" + body[:27],
		"enc:v1:" + idA + ":" + body[:40] + "\n" + body[40:], "enc:\x00:\xff:", "enc:v1:" + idA + ":" + strings.Repeat("A", 38),
	} {
		f.Add(seed, aad42)
	}
	f.Add(valid, "fitbit_users.refresh_token:43")
	f.Fuzz(func(t *testing.T, stored, aad string) {
		got, err := k.Decrypt(stored, aad)
		_ = k.NeedsRekey(stored)
		id, idOK := KeyID(stored)
		if idOK && !validID(id) {
			t.Fatalf("KeyID(%q) = %q, an invalid id", stored, id)
		}
		var nilRing *Keyring
		nilGot, nilErr := nilRing.Decrypt(stored, aad)

		if !IsEncrypted(stored) {
			if err != nil || got != stored || nilErr != nil || nilGot != stored {
				t.Fatalf("plaintext %q: Decrypt = %q, %v; nil ring: %q, %v", stored, got, err, nilGot, nilErr)
			}
			return
		}
		if nilErr == nil || (!errors.Is(nilErr, ErrNoKey) && !errors.Is(nilErr, ErrCorrupt)) {
			t.Fatalf("nil ring Decrypt(%q) = %q, %v, want ErrNoKey or ErrCorrupt", stored, nilGot, nilErr)
		}
		if err != nil {
			if got != "" {
				t.Fatalf("Decrypt returned %q alongside %v", got, err)
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Decrypt(%q) error %v wraps none of ErrCorrupt, ErrUnknownKey", stored, err)
			}
			msg := err.Error()
			if len(msg) > 400 {
				t.Fatalf("error is %d bytes: it echoes its input: %s", len(msg), msg)
			}
			// Ids are at most 16 bytes, so a longer run of the body in the message is an echo.
			if i := strings.LastIndexByte(stored, ':'); i >= 0 && len(stored)-i-1 > 32 && strings.Contains(msg, stored[i+1:]) {
				t.Fatalf("error echoes the body: %s", msg)
			}
			return
		}
		// Only a genuine ciphertext for this aad can get here: it must round trip.
		again, err := k.Decrypt(mustEncrypt(t, k, got, aad), aad)
		if err != nil || again != got {
			t.Fatalf("re-encrypted %q: %q, %v", got, again, err)
		}
	})
}

// b64Runs returns the maximal runs of base64-alphabet characters in s that are at least n
// long: the only shape key material can take.
func b64Runs(s string, n int) []string {
	isB64 := func(r rune) bool {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("+/-_", r)
	}
	var runs []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !isB64(r) }) {
		if len(f) >= n {
			runs = append(runs, f)
		}
	}
	return runs
}

// FuzzParseKeys feeds arbitrary key specifications to ParseKeys: it must never panic, a
// keyring it returns must work, and an error must never contain anything shaped like key
// material from the input. The second argument becomes a real 32-byte key, spelled four
// ways and glued to the fuzzed text, so the no-echo property is checked on actual keys.
//
// The check is exact, not statistical: ParseKeys's own messages have no base64 run longer
// than 12 characters and echo at most a validated id (16 characters), so any 17-character
// window of the input found in an error is an echo.
func FuzzParseKeys(f *testing.F) {
	_, a, _ := testKey(1)
	_, b, _ := testKey(2)
	for _, seed := range []string{
		a, a + "," + b, "id:" + a, "# c\n" + a + "\n\n" + b + "\r\n", "", ",", "#", a + ":" + b, "k:" + a + ",k:" + b,
		a + "," + a, strings.Repeat("A", 22), strings.Repeat("A", 43) + "===", "\ufeff" + a, "a b:" + a, "k:",
		"+" + strings.Repeat("_", 42), strings.Repeat("\n", 5) + strings.Repeat("x", 100),
	} {
		f.Add(seed, []byte("0123456789abcdef0123456789abcdef"))
	}
	f.Fuzz(func(t *testing.T, spec string, keyBytes []byte) {
		check := func(spec string, forbidden []string) {
			k, err := ParseKeys(spec)
			if err == nil {
				if k.CurrentID() == "" || len(k.IDs()) == 0 {
					t.Fatalf("ParseKeys(%q) returned an empty keyring", spec)
				}
				s, err := k.Encrypt("tok", "aad")
				if err != nil {
					t.Fatal(err)
				}
				if got, err := k.Decrypt(s, "aad"); err != nil || got != "tok" {
					t.Fatalf("round trip: %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, ErrBadKeySpec) {
				t.Fatalf("ParseKeys error %v does not wrap ErrBadKeySpec", err)
			}
			msg := err.Error()
			for _, run := range b64Runs(spec, 17) {
				for i := 0; i+17 <= len(run); i++ {
					if strings.Contains(msg, run[i:i+17]) {
						t.Fatalf("error echoes input %q: %s", run[i:i+17], msg)
					}
				}
			}
			for _, s := range forbidden {
				if strings.Contains(msg, s) {
					t.Fatalf("error contains key material %q: %s", s, msg)
				}
			}
		}
		check(spec, nil)
		if len(keyBytes) < KeySize {
			return
		}
		raw := keyBytes[:KeySize]
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			key := enc.EncodeToString(raw)
			var windows []string
			for i := 0; i+17 <= len(key); i++ {
				windows = append(windows, key[i:i+17])
			}
			if _, err := ParseKeys(key); err != nil {
				t.Fatalf("a 32-byte key spelled %q fails to parse: %v", key, err)
			}
			for _, s := range []string{spec + key, key + spec, spec + "," + key, key + "\n" + spec, "id:" + key + spec, key[:len(key)/2] + spec + key[len(key)/2:]} {
				check(s, windows)
			}
		}
	})
}
