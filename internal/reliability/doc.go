// Package reliability holds sync-all's fault suite: tests that build the real sync-all binary,
// run it as a subprocess against the Google Health simulator (internal/healthsim over real HTTP)
// and a real PostgreSQL, and break things on purpose: SIGKILLs at random and at chosen moments
// (between a token refresh and its save, inside a participant-day transaction), PostgreSQL
// stopped or restarted under a run, three hosts overlapping, 20% of API requests failing, and
// clock skew between this host and the API. Each test asserts the promises the job makes
// (no grant lost, a participant-day all-or-nothing, no lease stuck, convergence to exactly the
// simulator's data) and prints its figures as one "RELIABILITY <test> key=value ..." line that
// `make reliability` collects into a table.
//
// The package has no non-test code: this file exists for the package comment. `go test` runs a
// small version of every test (about a minute on two cores); RELIABILITY_FULL=1, which
// `make reliability` sets, runs the full counts (50+ kills, 200 participants, ...).
package reliability
