package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/studylab/sync-all/internal/pgtest"
)

// binary is the sync-all executable built once by TestMain: the tests run the real process, so
// that a SIGKILL kills everything the job has in memory, as a crash or an OOM kill would.
var binary string

// EnvFull selects the full counts (set by `make reliability`); unset, every test runs a smaller
// version that keeps `make test` fast.
const EnvFull = "RELIABILITY_FULL"

// EnvSeed overrides the seed of the tests' random choices (kill moments, fault kinds), printed by
// each test so a failure can be replayed.
const EnvSeed = "RELIABILITY_SEED"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sync-all-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(1)
	}
	pgtest.RemoveOnExit(dir)
	binary = filepath.Join(dir, "sync-all")
	build := exec.Command("go", "build", "-o", binary, "./cmd/sync-all")
	build.Dir = filepath.Join("..", "..") // the module root, from this package's directory
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: go build ./cmd/sync-all: %v\n%s", err, out)
		os.Exit(1)
	}
	pgtest.Main(m)
}

// full reports whether the full counts were asked for.
func full() bool { return os.Getenv(EnvFull) == "1" }

// pick returns small or big depending on full().
func pick(small, big int) int {
	if full() {
		return big
	}
	return small
}

// newRand returns the test's seeded random source and logs the seed.
func newRand(t *testing.T, def uint64) *rand.Rand {
	t.Helper()
	seed := def
	if s := os.Getenv(EnvSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvSeed, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (set %s to replay)", seed, EnvSeed)
	return rand.New(rand.NewPCG(seed, 0x51a5))
}
