package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/muster-iot/muster/internal/edge/runtime"
)

// maxReprovisionTime bounds a reprovisioning request.
const maxReprovisionTime = 5 * time.Minute

// NewHandler serves the management API over b.
//
//	GET  /status                  Status
//	GET  /modules                 []reconcile.ListRow
//	GET  /modules/{name}/logs     text; ?tail=N&since=RFC3339&until=RFC3339&follow=true&timestamps=true
//	POST /modules/{name}/restart  204
//	POST /reprovision             Reprovisioned
//	POST /restart                 202, then the daemon restarts
//
// Errors are {"message": "..."} with 404 (no such module), 409 (cannot
// now), 400 (bad parameters) or 500.
func NewHandler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status(r.Context()))
	})
	mux.HandleFunc("GET /modules", func(w http.ResponseWriter, r *http.Request) {
		rows, err := b.Modules(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rows)
	})
	mux.HandleFunc("GET /modules/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		opts, err := logOptions(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		rc, err := b.Logs(r.Context(), r.PathValue("name"), opts)
		if err != nil {
			writeError(w, err)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		copyFlushing(w, rc)
	})
	mux.HandleFunc("POST /modules/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RestartModule(r.Context(), r.PathValue("name")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /reprovision", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), maxReprovisionTime)
		defer cancel()
		res, err := b.Reprovision(ctx)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Restart(r.Context()); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

// logOptions reads the log selection of a request.
func logOptions(r *http.Request) (runtime.LogOptions, error) {
	q := r.URL.Query()
	var o runtime.LogOptions
	if s := q.Get("tail"); s != "" && s != "all" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return o, fmt.Errorf("tail %q is not a number of lines", s)
		}
		o.Tail = n
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &o.Since}, {"until", &o.Until}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return o, fmt.Errorf("%s %q is not an RFC 3339 time", f.name, s)
			}
			*f.dst = t
		}
	}
	o.Follow = q.Get("follow") == "true"
	o.Timestamps = q.Get("timestamps") == "true"
	return o, nil
}

// copyFlushing copies a log stream, flushing after every read so a
// follower sees lines as they come. It flushes the header first, so a
// follower of a quiet module is answered (and `iotedge logs -f` knows it is
// attached) before the first line.
func copyFlushing(w http.ResponseWriter, r io.Reader) {
	f, _ := w.(http.Flusher)
	if f != nil {
		f.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

type errorBody struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, runtime.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrUnavailable):
		status = http.StatusConflict
	}
	writeJSON(w, status, errorBody{err.Error()})
}

// Serve serves the management API on the socket of homedir until ctx
// ends. It refuses to start when another daemon answers on the socket.
func Serve(ctx context.Context, homedir string, h http.Handler, log *slog.Logger) (addr string, wait func() error, err error) {
	path := SocketPath(homedir)
	ln, err := listen(path)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close() // followers of a log do not end on their own
		}
	}()
	return path, func() error {
		err := <-done
		close(stopped)
		removeSocket(path)
		return err
	}, nil
}

// probe reports whether something answers on the socket.
func probe(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
