package bench

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/muster-iot/muster/internal/pki"
)

// DefaultMosquitto is where Debian's mosquitto package installs the broker.
const DefaultMosquitto = "/usr/sbin/mosquitto"

// ErrMosquittoMissing means the Mosquitto binary was not found; the bench
// then reports Muster's figures only.
var ErrMosquittoMissing = errors.New("mosquitto is not installed")

// Bounds of the Mosquitto peer's life.
const (
	// mosquittoStartTimeout bounds the wait for its listener.
	mosquittoStartTimeout = 15 * time.Second
	// mosquittoStopTimeout bounds the wait after SIGTERM before SIGKILL.
	mosquittoStopTimeout = 5 * time.Second
	// mosquittoStartAttempts bounds the retries when the free port found
	// was taken before the broker bound it.
	mosquittoStartAttempts = 3
	// mosquittoUser is the account Mosquitto (started as root) switches
	// to by default; the files it reads are handed to it.
	mosquittoUser = "mosquitto"
	// mosquittoBenchUser is the user name in the password file.
	mosquittoBenchUser = "muster-bench"
	// maxStderrTail bounds the broker's stderr kept for error messages.
	maxStderrTail = 4 << 10
)

// Mosquitto 2.0's password hash ("$7$"): PBKDF2-HMAC-SHA512 with a
// 12-byte salt and 101 iterations, as mosquitto_passwd writes it.
const (
	mosquittoHashID     = 7
	mosquittoIterations = 101
	mosquittoSaltBytes  = 12
	mosquittoHashBytes  = sha512.Size
)

// mosquittoPasswordLine returns a password-file line for user with the
// given salt, in the format Mosquitto 2.0 reads.
func mosquittoPasswordLine(user, password string, salt []byte) (string, error) {
	hash, err := pbkdf2.Key(sha512.New, password, salt, mosquittoIterations, mosquittoHashBytes)
	if err != nil {
		return "", fmt.Errorf("hash the mosquitto password: %w", err)
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("%s:$%d$%d$%s$%s\n", user, mosquittoHashID, mosquittoIterations, enc.EncodeToString(salt), enc.EncodeToString(hash)), nil
}

// mosquittoConfig is the broker's configuration: one TLS listener on
// loopback, password authentication, nothing persisted, errors and
// warnings on stderr, and TCP_NODELAY (without it, TLS connects stall on
// Nagle and delayed ACKs: the physical-limits note measured 343 instead
// of 1,410 connects/s). runAs, when not empty, is the "user" setting.
func mosquittoConfig(dir string, port int, runAs string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by muster bench hub for one run\n")
	fmt.Fprintf(&b, "per_listener_settings false\nallow_anonymous false\npassword_file %s\n", filepath.Join(dir, "passwd"))
	fmt.Fprintf(&b, "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nset_tcp_nodelay true\n")
	if runAs != "" {
		fmt.Fprintf(&b, "user %s\n", runAs)
	}
	fmt.Fprintf(&b, "listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n", port, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	return b.String()
}

// mosquittoPeer is a Mosquitto broker the bench started.
type mosquittoPeer struct {
	path     string
	version  string
	dir      string
	cmd      *exec.Cmd
	pid      int
	endpoint mqttEndpoint
	password string
	stderr   *tailBuffer
	exited   chan struct{} // closed when the process has been waited for
	waitErr  error
}

// credential is the CONNECT of client i: a distinct client ID and the
// bench's user.
func (m *mosquittoPeer) credential(prefix string) func(i int) mqttCredential {
	return func(i int) mqttCredential {
		return mqttCredential{ClientID: prefix + "-" + strconv.Itoa(i), Username: mosquittoBenchUser, Password: m.password}
	}
}

// startMosquitto writes a configuration with a fresh CA, server
// certificate and password into a temporary directory, starts the broker
// at path and waits until its listener accepts connections. tlsBase is
// the client TLS configuration to complete (key exchange preferences).
func startMosquitto(ctx context.Context, path string, tlsBase *tls.Config) (*mosquittoPeer, error) {
	bin, err := exec.LookPath(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w (on Debian: apt-get install mosquitto)", ErrMosquittoMissing, path, err)
	}
	m := &mosquittoPeer{path: bin, version: mosquittoVersion(ctx, bin)}
	if m.dir, err = os.MkdirTemp("", "muster-bench-mosquitto-"); err != nil {
		return nil, fmt.Errorf("create the mosquitto directory: %w", err)
	}
	roots, err := m.writeFiles()
	if err != nil {
		m.removeDir()
		return nil, err
	}
	cfg := tlsBase.Clone()
	cfg.RootCAs, cfg.ServerName = roots, "127.0.0.1"
	for attempt := 1; ; attempt++ {
		err = m.start(ctx)
		if err == nil {
			m.endpoint.TLS = cfg
			return m, nil
		}
		if attempt == mosquittoStartAttempts || ctx.Err() != nil {
			m.removeDir()
			return nil, err
		}
	}
}

// mosquittoVersion returns the first line of `mosquitto -h` ("mosquitto
// version 2.0.11"), or "" when it says nothing.
func mosquittoVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput() // it exits non-zero after printing the help
	line, _, _ := strings.Cut(string(out), "\n")
	if !strings.HasPrefix(line, "mosquitto version") {
		return ""
	}
	return strings.TrimSpace(line)
}

// writeFiles writes the server certificate, key and password file, and
// returns the roots that verify the certificate.
func (m *mosquittoPeer) writeFiles() (*x509.CertPool, error) {
	ca, err := pki.NewRoot("Muster Bench Mosquitto CA")
	if err != nil {
		return nil, fmt.Errorf("create the mosquitto CA: %w", err)
	}
	leaf, err := ca.NewServer("127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("issue the mosquitto server certificate: %w", err)
	}
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		return nil, fmt.Errorf("encode the mosquitto server key: %w", err)
	}
	pw := make([]byte, 24)
	salt := make([]byte, mosquittoSaltBytes)
	if _, err := rand.Read(pw); err != nil {
		return nil, fmt.Errorf("generate the mosquitto password: %w", err)
	}
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("generate the mosquitto password salt: %w", err)
	}
	m.password = base64.RawURLEncoding.EncodeToString(pw)
	line, err := mosquittoPasswordLine(mosquittoBenchUser, m.password, salt)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"server.crt": append(leaf.CertPEM(), ca.CertPEM()...),
		"server.key": keyPEM,
		"passwd":     []byte(line),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(m.dir, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("write the mosquitto %s: %w", name, err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return roots, nil
}

// mosquittoOwner decides who the broker runs as. Started by root,
// Mosquitto switches to its own account, so the files it reads are handed
// to that account (uid, gid ≥ 0); without such an account it must be told
// to stay root (setting "root"), or it refuses to start. For other users
// nothing changes (setting "", uid -1).
func mosquittoOwner() (setting string, uid, gid int) {
	if os.Geteuid() != 0 {
		return "", -1, -1
	}
	u, err := user.Lookup(mosquittoUser)
	if err != nil {
		return "root", -1, -1
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return "root", -1, -1
	}
	return "", uid, gid
}

// start writes the configuration for a free loopback port, starts the
// broker and waits for its listener.
func (m *mosquittoPeer) start(ctx context.Context) error {
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	runAs, uid, gid := mosquittoOwner()
	conf := filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(mosquittoConfig(m.dir, port, runAs)), 0o600); err != nil {
		return fmt.Errorf("write the mosquitto configuration: %w", err)
	}
	if uid >= 0 {
		err := filepath.WalkDir(m.dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("hand the mosquitto files to user %s: %w", mosquittoUser, err)
		}
	}
	m.stderr = &tailBuffer{max: maxStderrTail}
	cmd := exec.Command(m.path, "-c", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, m.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.path, err)
	}
	m.cmd, m.pid, m.exited = cmd, cmd.Process.Pid, make(chan struct{})
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	m.endpoint.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := m.awaitListener(ctx); err != nil {
		m.kill()
		return err
	}
	return nil
}

// awaitListener polls the broker's port until it accepts a TCP connection,
// the broker exits, or mosquittoStartTimeout passes.
func (m *mosquittoPeer) awaitListener(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, mosquittoStartTimeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", m.endpoint.Addr)
		if err == nil {
			abortTCP(c.(*net.TCPConn))
			return nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-m.exited:
			t.Stop()
			return fmt.Errorf("mosquitto exited at start (%v): %s", m.waitErr, m.stderr.String())
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("mosquitto did not listen on %s within %v: %w; its stderr: %s", m.endpoint.Addr, mosquittoStartTimeout, err, m.stderr.String())
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// kill stops the process: SIGTERM, then SIGKILL after mosquittoStopTimeout.
func (m *mosquittoPeer) kill() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(mosquittoStopTimeout)
	defer t.Stop()
	select {
	case <-m.exited:
	case <-t.C:
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// stop ends the broker and removes its directory.
func (m *mosquittoPeer) stop() {
	m.kill()
	m.removeDir()
}

func (m *mosquittoPeer) removeDir() { _ = os.RemoveAll(m.dir) }

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago (startMosquitto retries when another process took it meanwhile).
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(bytes.TrimSpace(t.b))
	if s == "" {
		return "(nothing on stderr)"
	}
	return s
}
