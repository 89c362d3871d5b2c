package pglocal_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/studylab/sync-all/internal/pglocal"
)

func TestStartStop(t *testing.T) {
	ctx := context.Background()
	var log bytes.Buffer
	c, err := pglocal.Start(ctx, pglocal.Options{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	dir := c.DataDir()

	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	var fsync, version string
	if err := conn.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('server_version_num')").Scan(&fsync, &version); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if fsync != "off" {
		t.Errorf("fsync = %q, want off", fsync)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir %s still exists after Stop (stat err %v)", dir, err)
	}
	if !strings.Contains(log.String(), "database system is ready to accept connections") {
		t.Errorf("server log not copied to Options.Log; got %q", log.String())
	}
	if _, err := pgx.Connect(ctx, c.DSN("postgres")); err == nil {
		t.Error("server still accepts connections after Stop")
	}
}

// A server that cannot start must say why: the error carries the server log.
func TestStartFailureIncludesServerLog(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	c, err := pglocal.Start(context.Background(), pglocal.Options{Port: port})
	if err == nil {
		c.Stop()
		t.Fatalf("Start on busy port %d succeeded", port)
	}
	if !strings.Contains(err.Error(), "server log:") || !strings.Contains(err.Error(), fmt.Sprint(port)) ||
		!strings.Contains(err.Error(), "could not") {
		t.Errorf("error does not carry the server log:\n%v", err)
	}
}

// A caller-owned Dir survives Stop and is reused by the next Start (the demo keeps its data).
func TestReuseDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// t.TempDir's parent is root-only (0700); the postgres user must reach its own dir.
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		parent := dir[:strings.LastIndex(dir, "/")]
		if err := os.Chmod(parent, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := dir + "/pg"
	c, err := pglocal.Start(ctx, pglocal.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
	conn.Close(ctx)
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	c, err = pglocal.Start(ctx, pglocal.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	conn, err = pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("reused cluster lost data: x=%d err=%v", x, err)
	}
}

// A process that dies without Stop (a crash, a test timeout) must not leave its cluster behind.
// The child below starts a cluster and exits; the watchdog it left must stop the server and
// remove the directory. We become a child subreaper so the orphaned watchdog is re-parented to us
// and we can wait for it deterministically instead of polling.
func TestWatchdogStopsOrphanedCluster(t *testing.T) {
	if os.Getenv("PGLOCAL_ORPHAN_CHILD") == "1" {
		return // handled by TestOrphanChild
	}
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Skipf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PGLOCAL_ORPHAN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var dir string
	var port, watchdog int
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ORPHAN ") {
			fmt.Sscan(strings.TrimPrefix(line, "ORPHAN "), &dir, &port, &watchdog)
		}
	}
	if dir == "" || watchdog == 0 {
		t.Fatalf("child did not report its cluster:\n%s", out)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(watchdog, &ws, 0, nil); err != nil && err != syscall.ECHILD {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("orphaned cluster dir %s still exists (stat: %v)", dir, err)
	}
	if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		conn.Close()
		t.Errorf("orphaned server still listens on %d", port)
	}
}

// TestOrphanChild is the child process of TestWatchdogStopsOrphanedCluster.
func TestOrphanChild(t *testing.T) {
	if os.Getenv("PGLOCAL_ORPHAN_CHILD") != "1" {
		t.Skip("helper process")
	}
	c, err := pglocal.Start(context.Background(), pglocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ORPHAN %s %d %d\n", c.DataDir(), c.Port(), pglocal.WatchdogPID(c))
	os.Exit(0) // "crash": no Stop
}
