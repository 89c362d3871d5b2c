// Package healthsim is a fake Google Health API v4 plus Google OAuth 2.0, served as an http.Handler.
//
// It is a small deterministic world rather than a stub: synthetic participants (seeded by their
// legacy Fitbit id) wear trackers that record heart rate, steps and calories minute by minute, take
// them off to charge, exercise, sleep, and sync to the phone at irregular intervals. Data becomes
// visible only up to the device's lastSyncTime, the most recent minutes are served provisionally and
// revised at a later sync, and every value is a pure function of (seed, participant, instant), so
// Truth can say exactly what the API serves at the injected clock's "now".
//
// The package is an independent reading of the API reference (../shared/google-health-api.md,
// health-api.json and health-gen.go of google.golang.org/api/health/v4): it deliberately imports none
// of this project's packages, so a client bug cannot hide behind a matching simulator bug.
//
// Choices where the reference is silent (its §13) are documented next to the code that makes them:
// windows after lastSyncTime are omitted, off-wrist windows are present without a value, the
// quota window is fixed per minute unless Options.RateLimitRolling, refresh tokens do not rotate
// unless Options.RotateRefreshTokens.
package healthsim
