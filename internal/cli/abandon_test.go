package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHolderPID(t *testing.T) {
	t.Parallel()
	for holder, want := range map[string]int{"host:123:456": 123, "a:b:7:8": 7, "host:x:1": 0, "nope": 0, "": 0} {
		if got := holderPID(holder); got != want {
			t.Errorf("holderPID(%q) = %d, want %d", holder, got, want)
		}
	}
}

// processAlive tells a live sync-all from a pid that is gone or now runs another program.
func TestProcessAlive(t *testing.T) {
	t.Parallel()
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	ended := exec.Command("/bin/sh", "-c", "exit 0")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	if processAlive(ended.Process.Pid) {
		t.Errorf("pid %d of an ended process counts as alive", ended.Process.Pid)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	named := filepath.Join(t.TempDir(), "sync-all")
	if err := os.WriteFile(named, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bin   string
		alive bool
	}{{sleep, false}, {named, true}} {
		cmd := exec.Command(c.bin, "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the exec: until then the child's command line is this test's.
		for i := 0; i < 200; i++ {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); strings.HasPrefix(string(b), c.bin) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		got := processAlive(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if got != c.alive {
			t.Errorf("processAlive(%s) = %v, want %v", filepath.Base(c.bin), got, c.alive)
		}
	}
}
