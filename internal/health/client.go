package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	healthapi "google.golang.org/api/health/v4"
	"google.golang.org/api/option"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the API root, e.g. "https://health.googleapis.com/" or an httptest server's URL.
	// The generated client appends "v4/users/me/...".
	BaseURL string
	// HTTPClient is the base client (timeouts, rate limiting transport). Each Session adds its
	// Bearer token on top of its Transport. nil means a client with a 60 s timeout.
	HTTPClient *http.Client
	// MaxAttempts bounds the attempts (first try included) of one HTTP call that failed
	// transiently; default 4. All calls this package makes are reads, so repeating them is safe.
	MaxAttempts int
	// BaseBackoff is the first retry delay, doubled per attempt and jittered; default 250ms.
	BaseBackoff time.Duration
	// DayConcurrency bounds the calls of one Day in flight at once; 0 means all thirteen, 1 one
	// after another.
	DayConcurrency int
}

const (
	defaultMaxAttempts = 4
	defaultBackoff     = 250 * time.Millisecond
	// maxBackoff caps one retry delay: a participant gets a per-user timeout from the syncer,
	// and waiting longer than this for one page would rather be spent on the next run.
	maxBackoff = 30 * time.Second
	// defaultTimeout bounds one HTTP exchange when the caller gave no client; a 1500-window
	// heart-rate page is ~150 kB, so a minute is generous.
	defaultTimeout = 60 * time.Second
	// maxPages stops a server that keeps handing out page tokens (a loop or a bug) from holding
	// a worker forever; a real day is at most a few pages per call.
	maxPages = 1000
)

// Client is the shared, participant-independent part: configuration and the generated service.
// It is safe for concurrent use.
type Client struct {
	cfg Config
	svc *healthapi.Service
}

// New validates cfg and builds the generated Google Health service over cfg.HTTPClient.
func New(cfg Config) (*Client, error) {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = defaultBackoff
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultTimeout}
	}
	// googleapi.ResolveRelative panics on an unparsable base, so reject it here.
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, &Error{Kind: KindAPI, Op: "new client", Err: fmt.Errorf("base URL %q must be an absolute http(s) URL", cfg.BaseURL)}
	}
	// Without a trailing slash ResolveReference would drop the last path segment of a prefix.
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	cfg.BaseURL = u.String()

	base := cfg.HTTPClient
	hc := &http.Client{
		Transport:     &transport{base: base.Transport, host: u.Host},
		Timeout:       base.Timeout,
		Jar:           base.Jar,
		CheckRedirect: base.CheckRedirect,
	}
	// WithHTTPClient makes the generated code use hc as is: no credentials lookup, no
	// WithoutAuthentication needed (transport/http.NewClient returns it unchanged).
	svc, err := healthapi.NewService(context.Background(),
		option.WithEndpoint(cfg.BaseURL),
		option.WithHTTPClient(hc),
	)
	if err != nil {
		return nil, &Error{Kind: KindAPI, Op: "new client", Err: err}
	}
	return &Client{cfg: cfg, svc: svc}, nil
}

// Session returns a view of the API for one participant's access token. It allocates nothing
// but the Session: the token travels with each request's context to the shared transport.
func (c *Client) Session(accessToken string) *Session {
	return &Session{c: c, token: accessToken}
}

// Session makes calls for one participant. It is safe for concurrent use.
type Session struct {
	c     *Client
	token string
}

// ctx attaches the token so the transport can set the Authorization header.
func (s *Session) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, tokenKey{}, bearer{s.token})
}

// call runs one HTTP call with bounded retries and returns a classified, scrubbed *Error on
// failure. Retried, up to MaxAttempts in all, with jittered exponential backoff: transient
// failures (5xx, network, timeouts), bodies that do not decode (a reply corrupted on the way
// looks exactly like that, and one more read is far cheaper than failing the participant's
// turn), and a 429 whose Retry-After is at most maxRetryAfter (the server says when to come back,
// and it is soon). Not retried: a 429 with a longer or no Retry-After (the job defers the
// participant to the next run instead of sleeping; hammering a quota makes it worse), reconsent,
// other 4xx. No retry starts that the context's deadline would cut short.
func call[T any](ctx context.Context, s *Session, op string, do func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	cctx := s.ctx(ctx)
	for attempt := 1; ; attempt++ {
		v, err := do(cctx)
		if err == nil {
			return v, nil
		}
		e := classify(op, err, s.token)
		wait, retry := retryDelay(e, s.c.cfg.BaseBackoff, attempt)
		if !retry || attempt >= s.c.cfg.MaxAttempts || ctx.Err() != nil {
			return zero, e
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return zero, e
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			// Report the cause that made us stop waiting, classified like any other.
			return zero, &Error{Kind: KindTransient, Op: op, Err: fmt.Errorf("%w (after: %v)", ctx.Err(), e.Err)}
		case <-t.C:
		}
	}
}

// maxRetryAfter is the longest Retry-After that call waits for; a longer one defers the
// participant to the next run.
const maxRetryAfter = 2 * time.Second

// retryDelay says whether a failed attempt is retried, and after how long.
func retryDelay(e *Error, base time.Duration, attempt int) (time.Duration, bool) {
	switch e.Kind {
	case KindTransient, KindMalformed:
		return backoff(base, attempt), true
	case KindRateLimited:
		if e.RetryAfter > 0 && e.RetryAfter <= maxRetryAfter {
			// A little jitter so the workers the quota stopped together do not return together.
			return e.RetryAfter + rand.N(e.RetryAfter/4+1), true
		}
	}
	return 0, false
}

// backoff is exponential with "equal jitter": half the delay fixed, half random, so
// workers that failed together do not retry together.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// Identity returns the participant's legacy Fitbit id and Google Health id.
func (s *Session) Identity(ctx context.Context) (Identity, error) {
	const op = "get identity"
	r, err := call(ctx, s, op, func(ctx context.Context) (*healthapi.Identity, error) {
		return s.c.svc.Users.GetIdentity("users/me/identity").Context(ctx).Do()
	})
	if err != nil {
		return Identity{}, err
	}
	if r == nil || r.HealthUserId == "" {
		return Identity{}, malformed(op, "no healthUserId")
	}
	return Identity{LegacyUserID: r.LegacyUserId, HealthUserID: r.HealthUserId}, nil
}

// Settings returns the participant's settings. The time zone is checked to be a zone this
// process can load, since the caller computes the participant's day in it.
func (s *Session) Settings(ctx context.Context) (Settings, error) {
	const op = "get settings"
	r, err := call(ctx, s, op, func(ctx context.Context) (*healthapi.Settings, error) {
		return s.c.svc.Users.GetSettings("users/me/settings").Context(ctx).Do()
	})
	if err != nil {
		return Settings{}, err
	}
	// "Local" would make LoadLocation return the host's zone, which says nothing about the user.
	if r == nil || r.TimeZone == "" || r.TimeZone == "Local" {
		return Settings{}, malformed(op, "no usable timeZone")
	}
	if _, err := time.LoadLocation(r.TimeZone); err != nil {
		return Settings{}, &Error{Kind: KindMalformed, Op: op, Reason: "UNKNOWN_TIME_ZONE", Err: err}
	}
	return Settings{TimeZone: r.TimeZone}, nil
}

// LastSync returns the newest lastSyncTime over all the participant's paired devices (all pages),
// in UTC; the zero time when there is no device or none has synced.
func (s *Session) LastSync(ctx context.Context) (time.Time, error) {
	const op = "list pairedDevices"
	var newest time.Time
	err := pages(ctx, s, op,
		func(ctx context.Context, token string) (*healthapi.ListPairedDevicesResponse, error) {
			// 100 is the documented maximum; the default (5) would cost extra pages.
			c := s.c.svc.Users.PairedDevices.List("users/me").PageSize(100).Context(ctx)
			if token != "" {
				c = c.PageToken(token)
			}
			return c.Do()
		},
		func(r *healthapi.ListPairedDevicesResponse) (string, error) {
			for _, d := range r.PairedDevices {
				if d == nil || d.LastSyncTime == "" {
					continue // a device that never synced says nothing about freshness
				}
				t, err := time.Parse(time.RFC3339Nano, d.LastSyncTime)
				if err != nil {
					return "", fmt.Errorf("unparseable lastSyncTime %q", clip(d.LastSyncTime))
				}
				if t.After(newest) {
					newest = t
				}
			}
			return r.NextPageToken, nil
		})
	if err != nil || newest.IsZero() {
		return time.Time{}, err
	}
	return newest.UTC(), nil
}

// malformed builds a KindMalformed error for a response that decoded but cannot be right.
func malformed(op, format string, args ...any) *Error {
	return &Error{Kind: KindMalformed, Op: op, Err: fmt.Errorf(format, args...)}
}
