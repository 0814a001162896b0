package schemas

import (
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

func TestCheckCodec(t *testing.T) {
	if err := checkCodec(orderSchema); err != nil {
		t.Fatalf("order.avsc: %v", err)
	}
	changed := map[string]string{
		"field renamed":    strings.Replace(orderSchemaJSON, `"product"`, `"item"`, 1),
		"type changed":     strings.Replace(orderSchemaJSON, `"type": "float"`, `"type": "double"`, 1),
		"field added":      strings.Replace(orderSchemaJSON, `{ "name": "price", "type": "float" }`, `{ "name": "price", "type": "float" }, { "name": "qty", "type": "int" }`, 1),
		"not a record":     `"string"`,
		"fields reordered": strings.Replace(strings.Replace(orderSchemaJSON, `"orderId"`, `"tmp"`, 1), `"product"`, `"orderId"`, 1),
	}
	for name, text := range changed {
		if text == orderSchemaJSON {
			t.Fatalf("%s: the schema did not change", name)
		}
		if err := checkCodec(avro.MustParse(text)); err == nil {
			t.Errorf("%s: checkCodec accepted %s", name, text)
		}
	}
}
