package tokencrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	aad42 = "fitbit_users.refresh_token:42"
	token = "1//0gAbCdEfGhIjKlMnOpQrStUvWxYz-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFG"
)

// testKey returns a deterministic 32-byte key, its std base64, and its derived id,
// computed here independently of the package.
func testKey(seed byte) (raw []byte, b64, id string) {
	raw = make([]byte, KeySize)
	for i := range raw {
		raw[i] = seed*31 + byte(i)*7 + 1
	}
	sum := sha256.Sum256(raw)
	return raw, base64.StdEncoding.EncodeToString(raw), hex.EncodeToString(sum[:4])
}

func mustParse(t testing.TB, spec string) *Keyring {
	t.Helper()
	k, err := ParseKeys(spec)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return k
}

func mustEncrypt(t testing.TB, k *Keyring, plain, aad string) string {
	t.Helper()
	s, err := k.Encrypt(plain, aad)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return s
}

// secretsOf is every spelling of a key an error or printout must never contain.
func secretsOf(raw []byte) []string {
	return []string{
		base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw),
		hex.EncodeToString(raw), string(raw),
		base64.RawStdEncoding.EncodeToString(raw)[:20], // a prefix is as bad as the whole
	}
}

func assertNoSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s leaks secret %q: %s", what, s, text)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	_, b64, id := testKey(1)
	k := mustParse(t, b64)
	for _, plain := range []string{"x", token, "ya29.a0AfH6SMB-ünïcødé-☃", strings.Repeat("t", 4096), "enc:v1:looks:encrypted"} {
		stored := mustEncrypt(t, k, plain, aad42)
		if want := "enc:v1:" + id + ":"; !strings.HasPrefix(stored, want) {
			t.Fatalf("stored = %q, want prefix %q", stored, want)
		}
		if !IsEncrypted(stored) || k.NeedsRekey(stored) {
			t.Errorf("IsEncrypted = %v, NeedsRekey = %v, want true, false", IsEncrypted(stored), k.NeedsRekey(stored))
		}
		if gotID, ok := KeyID(stored); !ok || gotID != id {
			t.Errorf("KeyID = %q, %v, want %q, true", gotID, ok, id)
		}
		if len(plain) > 8 && strings.Contains(stored, plain) {
			t.Errorf("ciphertext contains the plaintext")
		}
		got, err := k.Decrypt(stored, aad42)
		if err != nil || got != plain {
			t.Fatalf("Decrypt = %q, %v, want %q", got, err, plain)
		}
		if again := mustEncrypt(t, k, plain, aad42); again == stored {
			t.Errorf("two encryptions are identical: the nonce is not random")
		}
	}
}

func TestEmptyStaysEmpty(t *testing.T) {
	t.Parallel()
	_, b64, _ := testKey(1)
	k := mustParse(t, b64)
	if s, err := k.Encrypt("", aad42); s != "" || err != nil {
		t.Errorf(`Encrypt("") = %q, %v, want "", nil`, s, err)
	}
	if s, err := k.Decrypt("", aad42); s != "" || err != nil {
		t.Errorf(`Decrypt("") = %q, %v, want "", nil`, s, err)
	}
	if k.NeedsRekey("") {
		t.Error(`NeedsRekey("") = true, want false`)
	}
}

// TestWireFormat decrypts the v1 format by hand with crypto/cipher, and reads a value
// built outside the package: rows written today must stay readable by later releases.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	raw, b64, id := testKey(2)
	k := mustParse(t, b64)
	stored := mustEncrypt(t, k, token, aad42)
	header := "enc:v1:" + id + ":"
	body, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(stored, header))
	if err != nil {
		t.Fatal(err)
	}
	if want := 12 + len(token) + 16; len(body) != want {
		t.Fatalf("body is %d bytes, want %d (nonce + ciphertext + tag)", len(body), want)
	}
	block, _ := aes.NewCipher(raw)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, body[:12], body[12:], []byte(header+aad42))
	if err != nil || string(plain) != token {
		t.Fatalf("independent decrypt = %q, %v", plain, err)
	}

	// Key bytes 0..31, nonce "fixed-nonce!", AD "enc:v1:golden:" + aad42.
	const goldenKey = "golden:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	const golden = "enc:v1:golden:Zml4ZWQtbm9uY2Uhdg813GuSQM1UhcibhmKbfLKFHe1fLUfxp-2rkc2ba299iLbwOs3h8A"
	got, err := mustParse(t, goldenKey).Decrypt(golden, aad42)
	if err != nil || got != "1//0golden-refresh-token" {
		t.Fatalf("golden Decrypt = %q, %v", got, err)
	}
}

func TestTamperingFails(t *testing.T) {
	t.Parallel()
	rawA, a, idA := testKey(1)
	rawB, b, idB := testKey(2)
	k := mustParse(t, a+","+b)
	stored := mustEncrypt(t, k, token, aad42)
	header := "enc:v1:" + idA + ":"
	body := strings.TrimPrefix(stored, header)
	sealed, _ := base64.RawURLEncoding.DecodeString(body)
	flip := func(i int) string {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return header + base64.RawURLEncoding.EncodeToString(c)
	}

	cases := []struct {
		name, stored, aad string
		want              error
	}{
		{"nonce first byte", flip(0), aad42, ErrCorrupt},
		{"nonce last byte", flip(11), aad42, ErrCorrupt},
		{"ciphertext byte", flip(12), aad42, ErrCorrupt},
		{"ciphertext last byte", flip(12 + len(token) - 1), aad42, ErrCorrupt},
		{"tag byte", flip(len(sealed) - 1), aad42, ErrCorrupt},
		{"truncated tag", header + base64.RawURLEncoding.EncodeToString(sealed[:len(sealed)-1]), aad42, ErrCorrupt},
		{"appended byte", header + base64.RawURLEncoding.EncodeToString(append(bytes.Clone(sealed), 0)), aad42, ErrCorrupt},
		{"shorter than nonce+tag", header + base64.RawURLEncoding.EncodeToString(sealed[:27]), aad42, ErrCorrupt},
		{"empty body", header, aad42, ErrCorrupt},
		{"padded body", stored + "=", aad42, ErrCorrupt},
		{"newline in body", header + body[:10] + "\n" + body[10:], aad42, ErrCorrupt},
		{"std alphabet body", header + strings.NewReplacer("-", "+", "_", "/").Replace(body) + "+/", aad42, ErrCorrupt},
		{"key id swapped to other ring key", "enc:v1:" + idB + ":" + body, aad42, ErrCorrupt},
		{"key id unknown", "enc:v1:deadbeef:" + body, aad42, ErrUnknownKey},
		{"key id malformed", "enc:v1:a b:" + body, aad42, ErrCorrupt},
		{"key id too long", "enc:v1:" + strings.Repeat("a", 17) + ":" + body, aad42, ErrCorrupt},
		{"no key id", "enc:v1:" + body, aad42, ErrCorrupt},
		{"future version", "enc:v2:" + idA + ":" + body, aad42, ErrCorrupt},
		{"no version", "enc:", aad42, ErrCorrupt},
		{"wrong row", stored, "fitbit_users.refresh_token:43", ErrCorrupt},
		{"wrong row prefix", stored, "fitbit_users.refresh_token:4", ErrCorrupt},
		{"wrong column", stored, "fitbit_users.access_token:42", ErrCorrupt},
		{"empty aad", stored, "", ErrCorrupt},
	}
	for _, c := range cases {
		got, err := k.Decrypt(c.stored, c.aad)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Decrypt = %q, %v, want %v", c.name, got, err, c.want)
			continue
		}
		if got != "" {
			t.Errorf("%s: returned %q alongside an error", c.name, got)
		}
		assertNoSecret(t, c.name, err.Error(), append(append(secretsOf(rawA), secretsOf(rawB)...), token, body)...)
	}
	// The untouched value still decrypts: the cases above failed for their change alone.
	if got, err := k.Decrypt(stored, aad42); err != nil || got != token {
		t.Fatalf("untouched Decrypt = %q, %v", got, err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	rawA, a, idA := testKey(1)
	_, b, idB := testKey(2)
	old := mustEncrypt(t, mustParse(t, a), token, aad42)

	rotating := mustParse(t, b+"\n"+a)
	if rotating.CurrentID() != idB || strings.Join(rotating.IDs(), ",") != idB+","+idA {
		t.Fatalf("CurrentID = %q, IDs = %v", rotating.CurrentID(), rotating.IDs())
	}
	got, err := rotating.Decrypt(old, aad42)
	if err != nil || got != token {
		t.Fatalf("Decrypt under B,A = %q, %v", got, err)
	}
	if !rotating.NeedsRekey(old) {
		t.Error("NeedsRekey(old) = false under B,A, want true")
	}
	rekeyed := mustEncrypt(t, rotating, got, aad42)
	if id, _ := KeyID(rekeyed); id != idB || rotating.NeedsRekey(rekeyed) {
		t.Errorf("rekeyed value has key %q, NeedsRekey = %v; want %q, false", id, rotating.NeedsRekey(rekeyed), idB)
	}

	newOnly := mustParse(t, b)
	_, err = newOnly.Decrypt(old, aad42)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Decrypt under B alone: %v, want ErrUnknownKey", err)
	}
	for _, want := range []string{idA, idB, "add the old key after the current one"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	assertNoSecret(t, "unknown key error", err.Error(), secretsOf(rawA)...)
	if got, err := newOnly.Decrypt(rekeyed, aad42); err != nil || got != token {
		t.Errorf("rekeyed value under B = %q, %v", got, err)
	}
}

func TestPlaintextPassthrough(t *testing.T) {
	t.Parallel()
	_, a, _ := testKey(1)
	for name, k := range map[string]*Keyring{"nil": nil, "zero": {}, "keyed": mustParse(t, a)} {
		for _, legacy := range []string{token, "ya29.legacy-access", "enc", "ENC:v1:x:y", " enc:v1:x:y"} {
			if IsEncrypted(legacy) {
				t.Errorf("IsEncrypted(%q) = true", legacy)
			}
			got, err := k.Decrypt(legacy, aad42)
			if err != nil || got != legacy {
				t.Errorf("%s: Decrypt(%q) = %q, %v, want it unchanged", name, legacy, got, err)
			}
			if want := name == "keyed"; k.NeedsRekey(legacy) != want {
				t.Errorf("%s: NeedsRekey(%q) = %v, want %v", name, legacy, !want, want)
			}
		}
	}
}

func TestNoKeyConfigured(t *testing.T) {
	t.Parallel()
	_, a, idA := testKey(1)
	stored := mustEncrypt(t, mustParse(t, a), token, aad42)
	for name, k := range map[string]*Keyring{"nil": nil, "zero": {}} {
		if s, err := k.Encrypt(token, aad42); !errors.Is(err, ErrNoKey) || s != "" {
			t.Errorf("%s: Encrypt = %q, %v, want ErrNoKey", name, s, err)
		}
		_, err := k.Decrypt(stored, aad42)
		if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), idA) || !strings.Contains(err.Error(), "SYNC_TOKEN_KEY") {
			t.Errorf("%s: Decrypt(ciphertext) = %v, want ErrNoKey naming %s and SYNC_TOKEN_KEY", name, err, idA)
		}
		if k.NeedsRekey(stored) || k.CurrentID() != "" || k.IDs() != nil {
			t.Errorf("%s: NeedsRekey = %v, CurrentID = %q, IDs = %v", name, k.NeedsRekey(stored), k.CurrentID(), k.IDs())
		}
		if got := fmt.Sprint(k); got != "tokencrypt.Keyring(no key)" {
			t.Errorf("%s: String = %q", name, got)
		}
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	rawA, a, idA := testKey(1)
	_, b, idB := testKey(2)
	_, c, idC := testKey(3)
	urlA := base64.URLEncoding.EncodeToString(rawA)
	if urlA == a {
		t.Fatal("test key has no URL-only characters, so the URL cases test nothing: pick another seed")
	}
	cases := []struct {
		name, spec string
		ids        []string
	}{
		{"std padded", a, []string{idA}},
		{"std unpadded", strings.TrimRight(a, "="), []string{idA}},
		{"url padded", urlA, []string{idA}},
		{"url unpadded", base64.RawURLEncoding.EncodeToString(rawA), []string{idA}},
		{"explicit id", "2025-01:" + a, []string{"2025-01"}},
		{"explicit id with spaces", "  2025.q1 :  " + a + "  ", []string{"2025.q1"}},
		{"comma list", b + "," + a + ",", []string{idB, idA}},
		{"env with spaces", " " + b + " , " + a, []string{idB, idA}},
		{"file", "\ufeff# token keys, current first\n\nnew:" + c + "   # since 2026-03\r\n" + b + "\r\n# retired soon\n" + a + "\n", []string{"new", idB, idA}},
		{"mixed separators", c + "\n" + b + "," + a, []string{idC, idB, idA}},
	}
	for _, tc := range cases {
		k, err := ParseKeys(tc.spec)
		if err != nil {
			t.Errorf("%s: ParseKeys: %v", tc.name, err)
			continue
		}
		if got := strings.Join(k.IDs(), ","); got != strings.Join(tc.ids, ",") {
			t.Errorf("%s: IDs = %s, want %s", tc.name, got, strings.Join(tc.ids, ","))
		}
		if k.CurrentID() != tc.ids[0] {
			t.Errorf("%s: CurrentID = %s, want %s", tc.name, k.CurrentID(), tc.ids[0])
		}
	}
	// The same key bytes in any spelling decrypt each other's values.
	stored := mustEncrypt(t, mustParse(t, a), token, aad42)
	if got, err := mustParse(t, base64.RawURLEncoding.EncodeToString(rawA)).Decrypt(stored, aad42); err != nil || got != token {
		t.Errorf("URL spelling of the same key: %q, %v", got, err)
	}
}

func TestParseKeysErrors(t *testing.T) {
	t.Parallel()
	rawA, a, idA := testKey(1)
	rawB, b, _ := testKey(2)
	short := base64.StdEncoding.EncodeToString(rawA[:16])
	long := base64.StdEncoding.EncodeToString(append(bytes.Clone(rawB), 7))
	cases := []struct{ name, spec, want string }{
		{"empty", "", "no key given"},
		{"only separators and comments", " , ,\n# a comment\n\n", "no key given"},
		{"not base64", a + "," + "not*base64!", "key 2 is not valid base64"},
		{"space inside", a[:20] + " " + a[20:], "key 1 is not valid base64"},
		{"too much padding", strings.TrimRight(a, "=") + "===", "key 1 is not valid base64"},
		{"mixed alphabets", "+" + base64.RawURLEncoding.EncodeToString(rawA)[1:] + "_", "mixes the standard and URL-safe alphabets"},
		{"16 bytes", a + "," + short, "key 2 is 16 bytes, want 32 (generate one with: head -c 32 /dev/urandom | base64)"},
		{"33 bytes", long, "key 1 is 33 bytes, want 32"},
		{"line numbers in files", "# keys\n" + a + "\n\n" + short + "\n", "key 2 (line 4) is 16 bytes, want 32"},
		{"duplicate explicit id", "k1:" + a + ",k1:" + b, `key 2 has the same id "k1" as key 1`},
		{"explicit id equals derived id", a + "," + idA + ":" + b, `key 2 has the same id "` + idA + `" as key 1`},
		{"duplicate key", a + "," + b + ",other:" + base64.RawURLEncoding.EncodeToString(rawA), "key 3 is the same key as key 1"},
		{"invalid id", "bad id!:" + a, "key 1 has an invalid id"},
		{"id too long", strings.Repeat("x", 17) + ":" + a, "key 1 has an invalid id"},
		{"key pasted as id", a + ":" + b, "key 1 has an invalid id"},
		{"id without key", "k1:", "key 1 is empty after its id"},
	}
	for _, tc := range cases {
		k, err := ParseKeys(tc.spec)
		if err == nil {
			t.Errorf("%s: ParseKeys succeeded with %v", tc.name, k)
			continue
		}
		if !errors.Is(err, ErrBadKeySpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want ErrBadKeySpec containing %q", tc.name, err, tc.want)
		}
		secrets := append(secretsOf(rawA), secretsOf(rawB)...)
		secrets = append(secrets, short, strings.TrimRight(short, "="), long, a[:20], a[20:], b[:20])
		assertNoSecret(t, tc.name, err.Error(), secrets...)
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	rawA, a, idA := testKey(1)
	_, b, idB := testKey(2)
	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("# current\n"+b+"\n"+a+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(a+"\n"+base64.StdEncoding.EncodeToString(rawA[:16])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(kv ...string) func(string) string {
		return func(name string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == name {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cases := []struct {
		name    string
		getenv  func(string) string
		ids     string // "" = nil keyring
		wantErr string
	}{
		{"unset", env(), "", ""},
		{"value", env(EnvKey, b+","+a), idB + "," + idA, ""},
		{"file", env(EnvKeyFile, good), idB + "," + idA, ""},
		{"both", env(EnvKey, a, EnvKeyFile, good), "", "both SYNC_TOKEN_KEY and SYNC_TOKEN_KEY_FILE are set"},
		{"bad value", env(EnvKey, "k:"+a[:30]), "", "SYNC_TOKEN_KEY: key 1 is 22 bytes, want 32"},
		{"bad file", env(EnvKeyFile, bad), "", "SYNC_TOKEN_KEY_FILE " + bad + ": key 2 (line 2) is 16 bytes, want 32"},
		{"missing file", env(EnvKeyFile, filepath.Join(dir, "nope")), "", "SYNC_TOKEN_KEY_FILE: cannot read " + filepath.Join(dir, "nope") + ": no such file or directory"},
	}
	for _, tc := range cases {
		k, err := FromEnv(tc.getenv)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			} else {
				assertNoSecret(t, tc.name, err.Error(), append(secretsOf(rawA), a[:30])...)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.ids == "" && k != nil:
			t.Errorf("%s: got %v, want nil keyring", tc.name, k)
		case tc.ids != "" && strings.Join(k.IDs(), ",") != tc.ids:
			t.Errorf("%s: IDs = %v, want %s", tc.name, k.IDs(), tc.ids)
		}
	}
}

// TestPrintingHidesKeys prints a keyring every way a careless log line might.
func TestPrintingHidesKeys(t *testing.T) {
	t.Parallel()
	rawA, a, idA := testKey(1)
	rawB, b, idB := testKey(2)
	k := mustParse(t, a+","+b)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("keys", "keyring", k)
	for _, out := range []string{
		fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%+v", *k), fmt.Sprintf("%#v", *k),
		fmt.Sprintf("%x", *k), fmt.Sprintf("%v", []*Keyring{k}), logged.String(),
	} {
		assertNoSecret(t, "printed keyring", out, append(secretsOf(rawA), secretsOf(rawB)...)...)
	}
	if want := "tokencrypt.Keyring(current=" + idA + ", keys=" + idA + "," + idB + ")"; k.String() != want {
		t.Errorf("String = %q, want %q", k.String(), want)
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	s1, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := GenerateKey()
	raw, err := base64.StdEncoding.DecodeString(s1)
	if err != nil || len(raw) != KeySize {
		t.Fatalf("GenerateKey = %q: %d bytes, %v", s1, len(raw), err)
	}
	if s1 == s2 {
		t.Fatal("two generated keys are equal")
	}
	k := mustParse(t, s1+","+s2)
	if got, err := k.Decrypt(mustEncrypt(t, k, token, aad42), aad42); err != nil || got != token {
		t.Fatalf("round trip with generated keys = %q, %v", got, err)
	}
}

// TestConcurrentUse is for -race: one keyring serves every sync worker.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	_, a, _ := testKey(1)
	k := mustParse(t, a)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				aad := fmt.Sprintf("fitbit_users.access_token:%d", w*1000+i)
				plain := fmt.Sprintf("ya29.%d.%d", w, i)
				s, err := k.Encrypt(plain, aad)
				if err == nil {
					var got string
					got, err = k.Decrypt(s, aad)
					if err == nil && got != plain {
						err = fmt.Errorf("got %q, want %q", got, plain)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkEncrypt(b *testing.B) {
	_, a, _ := testKey(1)
	k := mustParse(b, a)
	b.ReportAllocs()
	b.SetBytes(int64(len(token)))
	for b.Loop() {
		if _, err := k.Encrypt(token, aad42); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	_, a, _ := testKey(1)
	_, old, _ := testKey(2)
	k := mustParse(b, a+","+old)
	stored := mustEncrypt(b, k, token, aad42)
	b.ReportAllocs()
	b.SetBytes(int64(len(token)))
	for b.Loop() {
		if _, err := k.Decrypt(stored, aad42); err != nil {
			b.Fatal(err)
		}
	}
}
