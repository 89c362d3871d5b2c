package cli

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/studylab/sync-all/internal/tokencrypt"
)

// requireTokenKey is the check of every command that writes tokens.
func (c *Config) requireTokenKey() error {
	if c.TokenKeys == nil && !c.AllowPlaintextTokens {
		return usageErr("%s (or %s) is not set: OAuth tokens are encrypted at rest; generate a key with `head -c 32 /dev/urandom | base64` (or pass --allow-plaintext-tokens)", tokencrypt.EnvKey, tokencrypt.EnvKeyFile)
	}
	return nil
}

// Environment variables. A contract: operators' env files and the acceptance checks use them.
const (
	EnvDatabaseURL      = "DATABASE_URL"
	EnvClientID         = "GOOGLE_CLIENT_ID"
	EnvClientSecret     = "GOOGLE_CLIENT_SECRET"
	EnvClientSecretFile = "GOOGLE_CLIENT_SECRET_FILE"
	EnvHealthAPIURL     = "HEALTH_API_URL"
	EnvAuthURL          = "GOOGLE_AUTH_URL"
	EnvTokenURL         = "GOOGLE_TOKEN_URL"
	EnvRevokeURL        = "GOOGLE_REVOKE_URL"
	EnvLogFile          = "SYNC_LOG_FILE"
)

// Defaults for the Google endpoints.
const (
	DefaultHealthAPIURL = "https://health.googleapis.com/"
	DefaultAuthURL      = "https://accounts.google.com/o/oauth2/v2/auth"
	DefaultTokenURL     = "https://oauth2.googleapis.com/token"
	DefaultRevokeURL    = "https://oauth2.googleapis.com/revoke"
	DefaultLogFile      = "logs/sync.log"
)

// Config is what every command may need, from flags first and the environment second.
type Config struct {
	DatabaseURL  string
	ClientID     string
	ClientSecret string
	HealthAPIURL string
	AuthURL      string
	TokenURL     string
	RevokeURL    string
	// TokenKeys encrypts OAuth tokens at rest (SYNC_TOKEN_KEY / SYNC_TOKEN_KEY_FILE); nil when
	// none is configured, which only --allow-plaintext-tokens accepts for writing tokens.
	TokenKeys            *tokencrypt.Keyring
	AllowPlaintextTokens bool
}

// configFlags registers the flags that override the environment.
func (c *Config) configFlags(fs *pflag.FlagSet, google bool) {
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL (default $"+EnvDatabaseURL+")")
	fs.BoolVar(&c.AllowPlaintextTokens, "allow-plaintext-tokens", false, "store OAuth tokens unencrypted when no "+tokencrypt.EnvKey+" is set (not recommended)")
	if google {
		fs.StringVar(&c.HealthAPIURL, "health-api-url", "", "Google Health API base URL (default $"+EnvHealthAPIURL+", else "+DefaultHealthAPIURL+")")
		fs.StringVar(&c.AuthURL, "google-auth-url", "", "OAuth authorization URL (default $"+EnvAuthURL+", else "+DefaultAuthURL+")")
		fs.StringVar(&c.TokenURL, "google-token-url", "", "OAuth token URL (default $"+EnvTokenURL+", else "+DefaultTokenURL+")")
	}
}

// resolveDatabase fills DatabaseURL from the environment and checks it.
func (c *Config) resolveDatabase(getenv func(string) string) error {
	if c.DatabaseURL == "" {
		c.DatabaseURL = getenv(EnvDatabaseURL)
	}
	if c.DatabaseURL == "" {
		return usageErr("%s is not set: export %s=postgres://USER@HOST:5432/DB (or pass --database-url)", EnvDatabaseURL, EnvDatabaseURL)
	}
	keys, err := tokencrypt.FromEnv(getenv)
	if err != nil {
		return usageErr("%v", err)
	}
	c.TokenKeys = keys
	if strings.Contains(c.DatabaseURL, "://") {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// The URL may hold a password: never echo it.
			return usageErr("%s is not a postgres:// URL: fix its format (postgres://USER:PASSWORD@HOST:5432/DB)", EnvDatabaseURL)
		}
	}
	return nil
}

// resolveGoogle fills the Google settings from the environment and checks them.
func (c *Config) resolveGoogle(getenv func(string) string) error {
	pick := func(dst *string, env, def string) {
		if *dst == "" {
			*dst = getenv(env)
		}
		if *dst == "" {
			*dst = def
		}
	}
	pick(&c.HealthAPIURL, EnvHealthAPIURL, DefaultHealthAPIURL)
	pick(&c.AuthURL, EnvAuthURL, DefaultAuthURL)
	pick(&c.TokenURL, EnvTokenURL, DefaultTokenURL)
	pick(&c.RevokeURL, EnvRevokeURL, "")
	if c.RevokeURL == "" {
		c.RevokeURL = siblingURL(c.TokenURL, "revoke", DefaultRevokeURL)
	}
	for _, u := range []struct{ name, val string }{
		{EnvHealthAPIURL, c.HealthAPIURL}, {EnvAuthURL, c.AuthURL}, {EnvTokenURL, c.TokenURL}, {EnvRevokeURL, c.RevokeURL},
	} {
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return usageErr("%s=%q is not an http(s) URL: set it to a full URL such as https://example.com/", u.name, u.val)
		}
	}
	if !strings.HasSuffix(c.HealthAPIURL, "/") {
		c.HealthAPIURL += "/"
	}

	c.ClientID = getenv(EnvClientID)
	if c.ClientID == "" {
		return usageErr("%s is not set: export the OAuth client id of your Google Cloud project (APIs & Services > Credentials)", EnvClientID)
	}
	secret, file := getenv(EnvClientSecret), getenv(EnvClientSecretFile)
	switch {
	case secret != "" && file != "":
		return usageErr("both %s and %s are set: keep only one (the file is safer)", EnvClientSecret, EnvClientSecretFile)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return usageErr("%s: cannot read %s: %v", EnvClientSecretFile, file, errorsWithoutContent(err))
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return usageErr("%s: %s is empty", EnvClientSecretFile, file)
		}
	case secret == "":
		return usageErr("%s (or %s) is not set: export the OAuth client secret, or the path of a file holding it", EnvClientSecret, EnvClientSecretFile)
	}
	c.ClientSecret = secret
	return nil
}

// siblingURL swaps the last path element of a token URL for name (".../token" -> ".../revoke"),
// which is how both Google and the simulator lay out their OAuth endpoints.
func siblingURL(tokenURL, name, def string) string {
	u, err := url.Parse(tokenURL)
	if err != nil || tokenURL == DefaultTokenURL {
		return def
	}
	i := strings.LastIndex(u.Path, "/")
	u.Path = u.Path[:i+1] + name
	return u.String()
}

// errorsWithoutContent keeps a file error's cause (not found, permission) and nothing else.
func errorsWithoutContent(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s", pe.Err)
	}
	return err
}
