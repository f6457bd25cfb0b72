package dpsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// MQTT topics of the DPS device protocol.
const (
	topicResponses = "$dps/registrations/res/#"
	responsePrefix = "$dps/registrations/res/"
	topicRegister  = "$dps/registrations/PUT/iotdps-register/?$rid="
	topicPoll      = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid="
)

const (
	mqttKeepAlive = 60 * time.Second
	// mqttQuiesce is how long Disconnect waits for in-flight work, in ms.
	mqttQuiesce = 100
	// subackFailure is the SUBACK return code of a refused subscription.
	subackFailure = 0x80
)

// mqttExchange performs one registration over its own MQTT connection.
type mqttExchange struct {
	c   *Client
	dev *prepared
	cli paho.Client

	mu      sync.Mutex
	nextRID uint64
	waiters map[string]chan reply
	lost    chan struct{} // closed when the connection is lost
	lostErr error
}

// mqttUsername is the CONNECT username of the DPS MQTT protocol.
func (c *Client) mqttUsername(regID string) string {
	return c.opts.IDScope + "/registrations/" + regID + "/api-version=" + c.opts.APIVersion +
		"&ClientVersion=" + queryEscape(c.opts.UserAgent)
}

func (c *Client) openMQTT(ctx context.Context, dev *prepared) (*mqttExchange, error) {
	ex := &mqttExchange{c: c, dev: dev, waiters: make(map[string]chan reply), lost: make(chan struct{})}
	tlsCfg := c.tlsConfig(dev.cert)
	dialCtx, cancelDial := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancelDial()

	o := paho.NewClientOptions()
	o.AddBroker("ssl://" + c.hostPort)
	o.SetClientID(dev.regID)
	o.SetUsername(c.mqttUsername(dev.regID))
	if dev.key != nil {
		o.SetPassword(c.token(dev.regID, dev.key))
	}
	o.SetProtocolVersion(4)
	o.SetCleanSession(true)
	o.SetKeepAlive(mqttKeepAlive)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetOrderMatters(false)
	o.SetConnectTimeout(c.opts.RequestTimeout)
	o.SetWriteTimeout(c.opts.RequestTimeout)
	o.SetTLSConfig(tlsCfg)
	o.SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{}, Config: tlsCfg}
		return d.DialContext(dialCtx, "tcp", c.hostPort)
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		ex.mu.Lock()
		defer ex.mu.Unlock()
		if ex.lostErr == nil {
			ex.lostErr = err
			close(ex.lost)
		}
	})
	ex.cli = paho.NewClient(o)

	connTok := ex.cli.Connect()
	if err := wait(dialCtx, connTok); err != nil {
		// paho's own ConnectTimeout ends an attempt still in progress;
		// disconnect once it has, so no connection outlives this call.
		go func() {
			<-connTok.Done()
			ex.cli.Disconnect(0)
		}()
		return nil, fmt.Errorf("connect mqtt %s for registration %q: %w", c.hostPort, dev.regID, err)
	}
	subCtx, cancelSub := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancelSub()
	tok := ex.cli.Subscribe(topicResponses, 1, ex.onMessage)
	if err := wait(subCtx, tok); err != nil {
		ex.cli.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s for registration %q: %w", topicResponses, dev.regID, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if code, ok := st.Result()[topicResponses]; ok && code == subackFailure {
			ex.cli.Disconnect(0)
			return nil, fmt.Errorf("subscribe for registration %q: %w", dev.regID, ErrSubscribeRefused)
		}
	}
	return ex, nil
}

// wait waits for a paho token, bounded by ctx.
func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: %w", ErrResponseTimeout, ctx.Err())
		}
		return ctx.Err()
	}
}

func (ex *mqttExchange) close() error {
	ex.cli.Disconnect(mqttQuiesce)
	return nil
}

// onMessage routes a response to the request with the same $rid.
func (ex *mqttExchange) onMessage(_ paho.Client, m paho.Message) {
	status, rid, ra, hasRA, err := parseResponseTopic(m.Topic())
	if err != nil {
		ex.c.log.Debug("dps mqtt: ignoring message", "registrationId", ex.dev.regID, "topic", m.Topic(), "error", err)
		return
	}
	ex.mu.Lock()
	ch, ok := ex.waiters[rid]
	delete(ex.waiters, rid)
	ex.mu.Unlock()
	if !ok {
		ex.c.log.Debug("dps mqtt: response for unknown $rid", "registrationId", ex.dev.regID, "rid", rid, "status", status)
		return
	}
	ch <- reply{status: status, body: append([]byte(nil), m.Payload()...), retryAfter: ra, hasRetryAfter: hasRA}
}

func (ex *mqttExchange) register(ctx context.Context) (reply, error) {
	return ex.request(ctx, "register", func(rid string) string { return topicRegister + rid }, ex.dev.body)
}

func (ex *mqttExchange) poll(ctx context.Context, operationID string) (reply, error) {
	return ex.request(ctx, "poll", func(rid string) string {
		return topicPoll + rid + "&operationId=" + queryEscape(operationID)
	}, nil)
}

func (ex *mqttExchange) request(ctx context.Context, what string, topic func(rid string) string, payload []byte) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, ex.c.opts.RequestTimeout)
	defer cancel()
	ch := make(chan reply, 1)
	ex.mu.Lock()
	ex.nextRID++
	rid := strconv.FormatUint(ex.nextRID, 10)
	ex.waiters[rid] = ch
	ex.mu.Unlock()
	defer func() {
		ex.mu.Lock()
		delete(ex.waiters, rid)
		ex.mu.Unlock()
	}()
	t := topic(rid)
	if err := wait(ctx, ex.cli.Publish(t, 1, false, payload)); err != nil {
		return reply{}, fmt.Errorf("publish %s request of registration %q: %w", what, ex.dev.regID, err)
	}
	select {
	case r := <-ch:
		ex.c.log.Debug("dps request", "transport", TransportMQTT, "topic", t, "registrationId", ex.dev.regID, "status", r.status, "retryAfter", r.retryAfter)
		return r, nil
	case <-ex.lost:
		return reply{}, fmt.Errorf("await %s response of registration %q: connection lost: %w", what, ex.dev.regID, ex.lostErr)
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return reply{}, fmt.Errorf("await %s response of registration %q ($rid %s): %w", what, ex.dev.regID, rid, ErrResponseTimeout)
		}
		return reply{}, fmt.Errorf("await %s response of registration %q: %w", what, ex.dev.regID, ctx.Err())
	}
}

// ParseResponseTopic parses a DPS MQTT response topic,
// "$dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]",
// returning the status, the URL-decoded $rid and the retry-after (0 when
// absent). Parameters may come in any order and unknown ones are ignored;
// the retry-after key is matched case-insensitively and a malformed value
// is treated as absent.
func ParseResponseTopic(topic string) (status int, rid string, retryAfter time.Duration, err error) {
	status, rid, retryAfter, _, err = parseResponseTopic(topic)
	return status, rid, retryAfter, err
}

func parseResponseTopic(topic string) (status int, rid string, retryAfter time.Duration, hasRetryAfter bool, err error) {
	rest, ok := strings.CutPrefix(topic, responsePrefix)
	if !ok {
		return 0, "", 0, false, fmt.Errorf("response topic %q does not start with %q", topic, responsePrefix)
	}
	statusText, query, _ := strings.Cut(rest, "?")
	statusText = strings.TrimSuffix(statusText, "/")
	if len(statusText) != 3 {
		return 0, "", 0, false, fmt.Errorf("response topic %q: status %q is not 3 digits", topic, statusText)
	}
	for i := 0; i < 3; i++ {
		if statusText[i] < '0' || statusText[i] > '9' {
			return 0, "", 0, false, fmt.Errorf("response topic %q: status %q is not 3 digits", topic, statusText)
		}
	}
	status, _ = strconv.Atoi(statusText)
	if status < 100 || status > 599 {
		return 0, "", 0, false, fmt.Errorf("response topic %q: status %d is out of range", topic, status)
	}
	hasRID := false
	for param := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(param, "=")
		switch {
		case k == "$rid":
			if hasRID {
				return 0, "", 0, false, fmt.Errorf("response topic %q has $rid twice", topic)
			}
			if rid, err = url.QueryUnescape(v); err != nil {
				return 0, "", 0, false, fmt.Errorf("response topic %q: decode $rid: %w", topic, err)
			}
			hasRID = true
		case strings.EqualFold(k, "retry-after"):
			retryAfter, hasRetryAfter = parseRetryAfter(v)
		}
	}
	if !hasRID || rid == "" {
		return 0, "", 0, false, fmt.Errorf("response topic %q has no $rid", topic)
	}
	return status, rid, retryAfter, hasRetryAfter, nil
}
