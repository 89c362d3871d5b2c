// Command healthsim serves the simulated Google Health API and Google OAuth (internal/healthsim) on
// a port, for the demo and for manual testing of sync-all against a world that behaves like Google.
//
//	healthsim --addr 127.0.0.1:8089 --participants 20 [--seed N] [--rotate-refresh-tokens]
//	          [--page-size N] [--speed F] [--start RFC3339] [--grant-lifetime 168h] [--empty-pages]
//
// It prints the base URL and the participants, logs one line per request (method, path, status,
// duration; never queries, bodies or tokens) and shuts down cleanly on SIGINT or SIGTERM. The client
// secret is "sim-secret" unless the environment variable HEALTHSIM_CLIENT_SECRET sets another.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/studylab/sync-all/internal/healthsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	addr     string
	speed    float64
	start    time.Time // simulated time at startup; zero = the real now
	quiet    bool
	opts     healthsim.Options
	shutdown time.Duration
}

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("healthsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8089", "listen address")
	fs.IntVar(&c.opts.Participants, "participants", 20, "synthetic participants (participant 0 is CRBM3W)")
	fs.Int64Var(&c.opts.Seed, "seed", 0, "world seed")
	fs.BoolVar(&c.opts.RotateRefreshTokens, "rotate-refresh-tokens", false, "issue a new refresh token on every refresh")
	fs.IntVar(&c.opts.PageSize, "page-size", 500, "max points per page (forces pagination)")
	fs.BoolVar(&c.opts.EmptyPages, "empty-pages", false, "insert empty pages that carry a nextPageToken")
	fs.DurationVar(&c.opts.GrantLifetime, "grant-lifetime", 0, "grants expire after this (168h = apps in Testing status); 0 = never")
	fs.DurationVar(&c.opts.AccessTokenLifetime, "access-token-lifetime", time.Hour, "access token lifetime")
	fs.IntVar(&c.opts.RateLimitPerMinute, "rate-limit", 300, "requests per minute per participant (negative = unlimited)")
	fs.StringVar(&c.opts.ClientID, "client-id", "sim-client", "OAuth client id")
	fs.Float64Var(&c.speed, "speed", 1, "clock multiplier: 60 makes a simulated hour pass in a real minute")
	start := fs.String("start", "", "simulated time at startup, RFC 3339 (default: now)")
	fs.BoolVar(&c.quiet, "quiet", false, "do not log requests")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 5*time.Second, "how long to let requests finish on shutdown")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.speed <= 0 {
		return c, errors.New("--speed must be positive")
	}
	if c.opts.Participants <= 0 {
		return c, errors.New("--participants must be positive")
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return c, fmt.Errorf("--start: %w", err)
		}
		c.start = t
	}
	// The secret comes from the environment so that it stays out of `ps` output.
	c.opts.ClientSecret = getenv("HEALTHSIM_CLIENT_SECRET")
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c, err := parseFlags(args, stderr, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "healthsim:", err)
		return 2
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		fmt.Fprintln(stderr, "healthsim:", err)
		return 1
	}
	if err := serve(ctx, c, ln, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "healthsim:", err)
		return 1
	}
	return 0
}

// clock runs simulated time from start at speed times real time.
func clock(start time.Time, speed float64) func() time.Time {
	real0 := time.Now()
	if start.IsZero() {
		start = real0
	}
	return func() time.Time {
		return start.Add(time.Duration(float64(time.Since(real0)) * speed))
	}
}

// serve runs the simulator on ln until ctx ends.
func serve(ctx context.Context, c config, ln net.Listener, stdout, stderr io.Writer) error {
	c.opts.Now = clock(c.start, c.speed)
	sim := healthsim.New(c.opts)
	var h http.Handler = sim
	if !c.quiet {
		h = logRequests(slog.New(slog.NewTextHandler(stderr, nil)), sim)
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "healthsim listening on %s\n", base)
	fmt.Fprintf(stdout, "  HEALTH_API_URL=%s/\n  GOOGLE_AUTH_URL=%s/o/oauth2/v2/auth\n  GOOGLE_TOKEN_URL=%s/token\n  GOOGLE_CLIENT_ID=%s\n",
		base, base, base, c.opts.ClientID)
	// Never the secret itself: it is "sim-secret" unless HEALTHSIM_CLIENT_SECRET sets one.
	fmt.Fprintln(stdout, "  GOOGLE_CLIENT_SECRET: the simulator default, or $HEALTHSIM_CLIENT_SECRET if set")
	fmt.Fprintf(stdout, "  simulated now %s (speed %gx)\n", c.opts.Now().UTC().Format(time.RFC3339), c.speed)
	for _, p := range sim.Participants() {
		fmt.Fprintf(stdout, "  participant %s  %-20s health id %s\n", p.LegacyUserID, p.TimeZone, p.HealthUserID)
	}

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(stdout, "healthsim stopped")
	return nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logRequests logs method, path, status and duration. The query is left out on purpose: the
// authorize URL carries state and PKCE challenges, and a redirect's Location carries the code.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
				"duration_ms", time.Since(start).Milliseconds())
		}()
		next.ServeHTTP(rec, r)
	})
}
