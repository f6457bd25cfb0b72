package bench

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMosquittoPasswordLine reproduces a line that mosquitto_passwd 2.0.11
// wrote (`mosquitto_passwd -c -b pw bench secret`) from its salt.
func TestMosquittoPasswordLine(t *testing.T) {
	const want = "bench:$7$101$lhYqFmJ/qc9YvgKi$yb/xzqHXCYvUGsrWEDpr/8jJB70fW6IB/VKUaS1f1r3AFyN3IKNfNx4/wVxV5/egIPTiucpimAedmdYvPb8vpg==\n"
	salt, err := base64.StdEncoding.DecodeString("lhYqFmJ/qc9YvgKi")
	if err != nil {
		t.Fatal(err)
	}
	got, err := mosquittoPasswordLine("bench", "secret", salt)
	if err != nil || got != want {
		t.Fatalf("mosquittoPasswordLine = %q, %v\nwant %q", got, err, want)
	}
}

// TestMosquittoConfig checks the settings the measurement depends on.
func TestMosquittoConfig(t *testing.T) {
	conf := mosquittoConfig("/d", 18883, "root")
	for _, want := range []string{
		"allow_anonymous false\n", "password_file /d/passwd\n", "persistence false\n", "set_tcp_nodelay true\n",
		"user root\n", "listener 18883 127.0.0.1\n", "certfile /d/server.crt\n", "keyfile /d/server.key\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(mosquittoConfig("/d", 1, ""), "user ") {
		t.Error("a configuration without runAs sets a user")
	}
}

// TestStartMosquittoMissing names the missing binary.
func TestStartMosquittoMissing(t *testing.T) {
	_, err := startMosquitto(context.Background(), "/nonexistent/mosquitto", &tls.Config{})
	if !errors.Is(err, ErrMosquittoMissing) || !strings.Contains(err.Error(), "/nonexistent/mosquitto") {
		t.Fatalf("error %v, want ErrMosquittoMissing naming the path", err)
	}
}

// TestMosquittoPeer starts the real broker as the bench does: the
// bench's credential connects and publishes QoS 1, a wrong password is
// refused, and stopping removes the process and its files.
func TestMosquittoPeer(t *testing.T) {
	if _, err := exec.LookPath(DefaultMosquitto); err != nil {
		t.Skipf("mosquitto is not installed at %s (Debian: apt-get install mosquitto): the peer is not tested here", DefaultMosquitto)
	}
	ctx := ctxTimeout(t, 2*time.Minute)
	m, err := startMosquitto(ctx, DefaultMosquitto, &tls.Config{MinVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.X25519}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			m.stop()
		}
	}()
	if !strings.HasPrefix(m.version, "mosquitto version 2.") {
		t.Errorf("version %q, want mosquitto version 2.x", m.version)
	}
	cred := m.credential("test")
	c, err := dialMQTT(ctx, m.endpoint, cred(0), 60)
	if err != nil {
		t.Fatalf("connect with the bench's credential: %v", err)
	}
	if got := c.tls.ConnectionState().CurveID; got != tls.X25519 {
		t.Errorf("negotiated %v, want X25519", got)
	}
	p := newPublisher(c, telemetryTopic(cred(0)), telemetryPayload(256), 8, 30*time.Second)
	pool := newPublishPool([]*publisher{p})
	res, err := Load{Concurrency: pool.size(), Ops: 200, Duration: time.Hour, Classify: hubErrorKind}.Run(ctx, pool.publish)
	if err != nil || res.Succeeded != 200 {
		t.Fatalf("publish 200 messages: %d acknowledged, %v %v", res.Succeeded, err, res.ErrorSamples)
	}
	if err := p.close(); err != nil {
		t.Errorf("close the publisher: %v", err)
	}

	bad := cred(1)
	bad.Password += "x"
	_, err = dialMQTT(ctx, m.endpoint, bad, 60)
	var ce *ConnackError
	if !errors.As(err, &ce) {
		t.Errorf("a wrong password: %v, want a refusing CONNACK", err)
	}

	m.stop()
	stopped = true
	select {
	case <-m.exited:
	default:
		t.Error("the mosquitto process is still running after stop")
	}
	if _, err := os.Stat(m.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the mosquitto directory %s is still there: %v", m.dir, err)
	}
}
