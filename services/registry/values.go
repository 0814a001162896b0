// Package registry is the Confluent Schema Registry at the project's edge:
// order values in its wire format (a magic byte, the writer schema's id,
// the Avro body), through hamba/avro's registry client, and an embedded
// registry for machines without one.
package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	hamba "github.com/hamba/avro/v2/registry"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/wait"
)

// Subject is the subject of the orders topic's values, by the registry's
// default TopicNameStrategy: the topic, then -value.
const Subject = "orders-value"

// Config says how to reach a registry.
type Config struct {
	URL string
	// Username and Password are its basic-auth credentials. Optional.
	Username, Password string
	// TLS is used for an https URL. Optional, default the system's roots.
	TLS *tls.Config
}

// requestTimeout bounds one request to the registry.
const requestTimeout = 10 * time.Second

// Values are orders in the Confluent wire format: Encode frames them with
// the id of the codec's schema (see Register); Decode reads each value by
// its writer schema's id, resolved against the codec's schema once per id.
// A registry that cannot be reached is waited for, with backoff: it never
// makes a good value undecodable.
type Values struct {
	codec  *schemas.Codec
	client *hamba.Client
	url    string
	log    *zap.Logger

	readers sync.Map // uint32 -> *reading

	mu     sync.Mutex
	header []byte // the frame of the codec's schema, once registered

	// Recheck is how long an id the registry does not know waits to be
	// asked about once more, as a registry replica may learn of a schema
	// just registered a moment later; Forget is how long an unknown id is
	// then remembered as unknown.
	Recheck, Forget time.Duration
}

// reading is what decoding values of one schema id needs: the writer's
// schema resolved against ours, or why it cannot be.
type reading struct {
	rs    *schemas.Resolved
	err   error
	until time.Time // for an unknown id: when to ask again
}

// New returns the values of codec's schema in the registry cfg names. It
// checks the URL, not the registry: see Check.
func New(cfg Config, codec *schemas.Codec, log *zap.Logger) (*Values, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q: must be an http:// or https:// URL", cfg.URL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	opts := []hamba.ClientFunc{hamba.WithHTTPClient(&http.Client{Transport: tr, Timeout: requestTimeout})}
	if cfg.Username != "" || cfg.Password != "" {
		opts = append(opts, hamba.WithBasicAuth(cfg.Username, cfg.Password))
	}
	client, err := hamba.NewClient(cfg.URL, opts...)
	if err != nil {
		return nil, err
	}
	return &Values{codec: codec, client: client, url: u.Redacted(), log: log,
		Recheck: time.Second, Forget: time.Minute}, nil
}

// Check asks the registry for its subjects: it fails if the registry
// cannot be reached or refuses the credentials, so that a process fails at
// start rather than once records come.
func (v *Values) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := v.client.GetSubjects(ctx); err != nil {
		return v.explain(err)
	}
	return nil
}

// Register looks up the codec's schema under Subject, registering it if
// it is not there, and frames what Encode writes with its id. A registry
// that refuses it (not compatible with the subject's latest version, or
// read-only) fails with the registry's reason. Encode registers on its
// first call if Register was not called.
func (v *Values) Register(ctx context.Context) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.register(ctx)
}

func (v *Values) register(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	id, err := v.RegisterAs(ctx, Subject, v.codec.SchemaJSON())
	if err != nil {
		return 0, err
	}
	v.header = schemas.AppendFrame(nil, uint32(id))
	return id, nil
}

// RegisterAs looks up schema under subject, registering it if it is not
// there, and returns its id.
func (v *Values) RegisterAs(ctx context.Context, subject, schema string) (int, error) {
	id, _, err := v.client.IsRegistered(ctx, subject, schema)
	if isNotFound(err) {
		id, _, err = v.client.CreateSchema(ctx, subject, schema)
	}
	if err != nil {
		return 0, fmt.Errorf("register the order schema under %s: %w", subject, v.explain(err))
	}
	return id, nil
}

// Encode frames o's Avro body with the id of the codec's schema.
func (v *Values) Encode(ctx context.Context, o schemas.Order) ([]byte, error) {
	v.mu.Lock()
	if v.header == nil {
		if _, err := v.register(ctx); err != nil {
			v.mu.Unlock()
			return nil, err
		}
	}
	header := v.header
	v.mu.Unlock()
	body, err := v.codec.Encode(o)
	if err != nil {
		return nil, err
	}
	return append(append(make([]byte, 0, len(header)+len(body)), header...), body...), nil
}

// Decode reads a value in the Confluent wire format. A value without the
// magic byte, of an id the registry does not know, or of a writer schema
// that does not resolve against ours fails with schemas.ErrDecode,
// ErrUnknownSchema or ErrIncompatible. While the registry cannot be
// reached it waits, with backoff, until it can or ctx ends.
func (v *Values) Decode(ctx context.Context, b []byte) (schemas.Order, error) {
	id, body, err := schemas.Unframe(b)
	if err != nil {
		return schemas.Order{}, err
	}
	rd, err := v.reading(ctx, id)
	if err != nil {
		return schemas.Order{}, err
	}
	if rd.err != nil {
		return schemas.Order{}, rd.err
	}
	return rd.rs.Decode(body)
}

// reading is how to read values of schema id, asking the registry once per
// id (and again, for an unknown one, after Forget).
func (v *Values) reading(ctx context.Context, id uint32) (*reading, error) {
	if e, ok := v.readers.Load(id); ok {
		if rd := e.(*reading); rd.until.IsZero() || time.Now().Before(rd.until) {
			return rd, nil
		}
	}
	backoff := wait.NewBackoff()
	rechecked := false
	for failures := 0; ; failures++ {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		writer, err := v.client.GetSchema(rctx, int(id))
		cancel()
		var rd *reading
		switch {
		case err == nil:
			rs, rerr := v.codec.Resolve(writer)
			if rerr != nil {
				rerr = fmt.Errorf("schema id %d: %w", id, rerr)
			}
			rd = &reading{rs: rs, err: rerr}
		case isNotFound(err) && !rechecked:
			rechecked = true
			if !wait.For(ctx, v.Recheck) {
				return nil, ctx.Err()
			}
			continue
		case isNotFound(err):
			rd = &reading{err: fmt.Errorf("%w: %d: the registry at %s has no schema of that id", schemas.ErrUnknownSchema, id, v.url),
				until: time.Now().Add(v.Forget)}
		case isUnreadable(err):
			rd = &reading{err: fmt.Errorf("%w: schema id %d is not an Avro schema: %v", schemas.ErrIncompatible, id, err)}
		default:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if failures%10 == 0 {
				v.log.Warn("schema registry unavailable; decoding waits and retries with backoff",
					zap.String("url", v.url), zap.Uint32("schemaId", id), zap.Int("failures", failures+1), zap.Error(v.explain(err)))
			}
			if !backoff.Wait(ctx) {
				return nil, ctx.Err()
			}
			continue
		}
		v.readers.Store(id, rd)
		return rd, nil
	}
}

// isNotFound reports the registry's answer that a subject, a version or a
// schema id is unknown.
func isNotFound(err error) bool {
	var re hamba.Error
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// isUnreadable reports a schema the registry returned that hamba/avro
// cannot parse (its errors begin "avro: "): an answer, not an outage.
func isUnreadable(err error) bool {
	var re hamba.Error
	return !errors.As(err, &re) && strings.HasPrefix(err.Error(), "avro: ")
}

// explain says what a registry error means for the user.
func (v *Values) explain(err error) error {
	var re hamba.Error
	switch {
	case errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden):
		return fmt.Errorf("schema registry %s refused the credentials (HTTP %d: %v): check SCHEMA_REGISTRY_USERNAME and the password", v.url, re.StatusCode, err)
	case errors.As(err, &re):
		return fmt.Errorf("schema registry %s: HTTP %d: %v", v.url, re.StatusCode, err)
	}
	return fmt.Errorf("schema registry %s unreachable: %w", v.url, err)
}
