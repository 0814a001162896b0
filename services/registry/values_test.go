package registry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"go.uber.org/zap"

	"github.com/orderflow/orders/schemas"
	"github.com/orderflow/orders/services/registry"
)

// newerSchema is order.avsc with a field added with a default.
var newerSchema = strings.Replace(schemas.OrderSchemaJSON(),
	`{ "name": "price", "type": "float" }`,
	`{ "name": "price", "type": "float" }, { "name": "quantity", "type": "int", "default": 1 }`, 1)

func embedded(t *testing.T) *registry.Embedded {
	t.Helper()
	e, err := registry.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func values(t *testing.T, url string, c *schemas.Codec) *registry.Values {
	t.Helper()
	v, err := registry.New(registry.Config{URL: url}, c, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	v.Recheck, v.Forget = 10*time.Millisecond, time.Minute
	return v
}

func codec(t *testing.T, schema string) *schemas.Codec {
	t.Helper()
	c, err := schemas.NewCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var order = schemas.Order{OrderID: "1006", Product: "Item3", Price: 39.79}

func TestOlderAndNewerProducersAreReadAlike(t *testing.T) {
	ctx := context.Background()
	e := embedded(t)
	older, newer := values(t, e.URL(), schemas.Plain), values(t, e.URL(), codec(t, newerSchema))
	idOld, err := older.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idNew, err := newer.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idOld == idNew {
		t.Fatalf("both schemas have id %d", idOld)
	}
	// Registering again finds the same id.
	if again, err := values(t, e.URL(), schemas.Plain).Register(ctx); err != nil || again != idOld {
		t.Fatalf("Register again = %d, %v; want %d", again, err, idOld)
	}
	stage := values(t, e.URL(), schemas.Plain)
	if err := stage.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*registry.Values{older, newer} {
		b, err := p.Encode(ctx, order)
		if err != nil {
			t.Fatal(err)
		}
		id, body, err := schemas.Unframe(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := stage.Decode(ctx, b); err != nil || got != order {
			t.Fatalf("id %d: Decode = %+v, %v", id, got, err)
		}
		if p == newer {
			var full struct {
				Quantity int32 `avro:"quantity"`
			}
			if err := avro.Unmarshal(avro.MustParse(newerSchema), body, &full); err != nil || full.Quantity != 1 {
				t.Fatalf("the newer producer wrote quantity %d, %v", full.Quantity, err)
			}
		}
	}
}

func TestValuesThatNeverDecode(t *testing.T) {
	ctx := context.Background()
	e := embedded(t)
	// A writer whose price is a string: registered under a subject of its
	// own, as a registry checking compatibility would refuse it under ours.
	bad := strings.Replace(schemas.OrderSchemaJSON(), `"type": "float"`, `"type": "string"`, 1)
	c, err := avroRegister(e.URL(), "other-value", bad)
	if err != nil {
		t.Fatal(err)
	}
	stage := values(t, e.URL(), schemas.Plain)
	plain, _ := schemas.Encode(order)
	cases := []struct {
		name  string
		value []byte
		want  error
		text  string
	}{
		{"plain avro", plain, schemas.ErrDecode, "first byte 0x08, not the magic byte 0x00"},
		{"unknown id", append(schemas.AppendFrame(nil, 999), plain...), schemas.ErrUnknownSchema, "999"},
		{"incompatible", append(schemas.AppendFrame(nil, uint32(c)), plain...), schemas.ErrIncompatible, "reader schema float not compatible with writer schema string"},
	}
	for _, tc := range cases {
		_, err := stage.Decode(ctx, tc.value)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || !schemas.IsValueError(err) {
			t.Errorf("%s: Decode = %v, want %v naming %q", tc.name, err, tc.want, tc.text)
		}
	}
}

// avroRegister registers schema under subject with hamba/avro's client.
func avroRegister(url, subject, schema string) (int, error) {
	v, err := registry.New(registry.Config{URL: url}, schemas.Plain, zap.NewNop())
	if err != nil {
		return 0, err
	}
	return v.RegisterAs(context.Background(), subject, schema)
}

func TestARegistryOutageIsWaitedFor(t *testing.T) {
	ctx := context.Background()
	e := embedded(t)
	producer := values(t, e.URL(), codec(t, newerSchema))
	if _, err := producer.Register(ctx); err != nil {
		t.Fatal(err)
	}
	value, _ := producer.Encode(ctx, order)

	// The stages reach the registry through a proxy that fails its first
	// requests with 503, as a registry restarting does.
	target, _ := url.Parse(e.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refused atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refused.Add(1) <= 3 {
			http.Error(w, `{"error_code":50003,"message":"restarting"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	stage := values(t, front.URL, schemas.Plain)
	got, err := stage.Decode(ctx, value)
	if err != nil || got != order {
		t.Fatalf("Decode through the outage = %+v, %v", got, err)
	}
	if n := refused.Load(); n < 4 {
		t.Fatalf("the registry was asked %d times, want the 3 refusals and a success", n)
	}

	// Down for good: Decode waits until its context ends, and the error is
	// the context's, not the value's.
	front.Close()
	down := values(t, front.URL, schemas.Plain)
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := down.Decode(cctx, value); err == nil || schemas.IsValueError(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Decode with the registry down = %v, want the context's deadline", err)
	}
	if err := down.Check(ctx); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Check with the registry down = %v, want unreachable", err)
	}
}

func TestCheckNamesRefusedCredentials(t *testing.T) {
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "orders" || p != "secret" {
			http.Error(w, `{"error_code":40101,"message":"Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	defer front.Close()
	for _, tc := range []struct {
		pass string
		ok   bool
	}{{"secret", true}, {"wrong", false}} {
		v, err := registry.New(registry.Config{URL: front.URL, Username: "orders", Password: tc.pass}, schemas.Plain, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		err = v.Check(context.Background())
		if (err == nil) != tc.ok || (err != nil && (!strings.Contains(err.Error(), "refused the credentials") || strings.Contains(err.Error(), tc.pass))) {
			t.Errorf("password %q: Check = %v", tc.pass, err)
		}
	}
}

func TestNewRefusesABadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8081", "ftp://x", "http://"} {
		if _, err := registry.New(registry.Config{URL: u}, schemas.Plain, zap.NewNop()); err == nil {
			t.Errorf("New(%q) accepted it", u)
		}
	}
}
