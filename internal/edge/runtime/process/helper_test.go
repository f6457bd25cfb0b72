package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// helperEnv switches the test binary into module mode: it then runs the
// little script in its arguments instead of the tests.
const helperEnv = "MUSTER_PROCESS_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperMain interprets its arguments as commands:
//
//	print TEXT     write TEXT and a newline to stdout
//	eprint TEXT    write TEXT and a newline to stderr
//	env NAME       print NAME=<value> (or NAME unset)
//	pwd            print the working directory
//	spam N         print lines line-000 … line-N-1
//	trap           on SIGTERM print "terminated" and exit 0
//	ignoreterm     ignore SIGTERM
//	spawn          start a copy of this binary that sleeps; print its pid
//	ready          print "ready"
//	sleep          block until killed
//	exit N         exit with status N
func helperMain(args []string) int {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := 0; i < len(args); i++ {
		arg := func() string {
			i++
			if i >= len(args) {
				fmt.Fprintln(os.Stderr, "missing argument")
				os.Exit(2)
			}
			return args[i]
		}
		switch args[i] {
		case "print":
			fmt.Fprintln(out, arg())
		case "eprint":
			out.Flush()
			fmt.Fprintln(os.Stderr, arg())
		case "env":
			name := arg()
			if v, ok := os.LookupEnv(name); ok {
				fmt.Fprintf(out, "%s=%s\n", name, v)
			} else {
				fmt.Fprintf(out, "%s unset\n", name)
			}
		case "pwd":
			wd, _ := os.Getwd()
			fmt.Fprintln(out, wd)
		case "spam":
			n, _ := strconv.Atoi(arg())
			for j := range n {
				fmt.Fprintf(out, "line-%03d\n", j)
			}
		case "trap":
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, syscall.SIGTERM)
			go func() {
				<-ch
				fmt.Println("terminated")
				os.Exit(0)
			}()
		case "ignoreterm":
			signal.Ignore(syscall.SIGTERM)
		case "spawn":
			exe, _ := os.Executable()
			cmd := exec.Command(exe, "sleep")
			cmd.Env = append(os.Environ(), helperEnv+"=1")
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Fprintf(out, "child %d\n", cmd.Process.Pid)
		case "ready":
			fmt.Fprintln(out, "ready")
		case "sleep":
			out.Flush()
			for {
				time.Sleep(time.Hour)
			}
		case "exit":
			n, _ := strconv.Atoi(arg())
			out.Flush()
			return n
		default:
			fmt.Fprintln(os.Stderr, "unknown command", args[i])
			return 2
		}
	}
	return 0
}

// testExe is the test binary, used as every module's executable.
func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// tickClock is a clock that advances one second per reading.
type tickClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tickClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// newRuntime returns a process runtime in a fresh directory.
func newRuntime(t *testing.T, mod func(*Options)) (*Runtime, string) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{Dir: dir, StopGrace: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r, dir
}

// helperSpec is a module running the test binary with the given script.
func helperSpec(t *testing.T, name string, createOptions string) runtime.ModuleSpec {
	return runtime.ModuleSpec{
		Name:          name,
		Image:         testExe(t),
		CreateOptions: createOptions,
		Env:           map[string]string{helperEnv: "1"},
	}
}

// cmdOptions builds createOptions running the given helper commands.
func cmdOptions(cmd ...string) string {
	var b strings.Builder
	b.WriteString(`{"Cmd":[`)
	for i, c := range cmd {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(c))
	}
	b.WriteString(`]}`)
	return b.String()
}

// waitState polls until the module reaches state (bounded: 15 s).
func waitState(t *testing.T, r runtime.Runtime, name string, state runtime.State) runtime.ModuleState {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := r.Inspect(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("module %s is %s, never reached %s", name, st.State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readLogs returns a module's captured output.
func readLogs(t *testing.T, r runtime.Runtime, name string, opts runtime.LogOptions) string {
	t.Helper()
	rc, err := r.Logs(context.Background(), name, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitLog polls until the module's output contains want (bounded: 15 s).
func waitLog(t *testing.T, r runtime.Runtime, name, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(readLogs(t, r, name, runtime.LogOptions{}), want) {
		if time.Now().After(deadline) {
			t.Fatalf("module %s never logged %q", name, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isNotFound(err error) bool { return errors.Is(err, runtime.ErrNotFound) }
