package config

import (
	"fmt"
	"strings"
	"testing"
)

// Secret values never appear in messages: not in the rendering of a
// Secret, not in decode or validation errors about the lines holding them.
func TestSecretsStayOutOfMessages(t *testing.T) {
	const secret = "U2VjcmV0VmFsdWVOZXZlckxvZ2dlZA"
	s := Secret{Value: secret}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, s); strings.Contains(got, secret) {
			t.Errorf("fmt %s of a Secret reveals the value: %s", format, got)
		}
	}
	docs := map[string]string{
		"bad base64":         "[provisioning]\nsource = 'dps'\n[provisioning.attestation]\nmethod = 'symmetric_key'\nsymmetric_key = { value = '" + secret + "*' }\n",
		"syntax on key line": "[provisioning]\nsource = 'dps'\n[provisioning.attestation]\nmethod = 'symmetric_key'\nsymmetric_key = { value = '" + secret + "' \n",
		"unknown key nearby": "[provisioning]\nsource = 'dps'\n[provisioning.attestation]\nsymmetric_key = { value = '" + secret + "' }\nmethd = 'x'\n",
		"connection string":  "[provisioning]\nsource = 'manual'\nconnection_string = 'HostName=h;DeviceId=d;SharedAccessKey=" + secret + "*'\n",
		"1.1 bare string":    "[provisioning]\nsource = 'dps'\n[provisioning.attestation]\nmethod = 'symmetric_key'\nsymmetric_key = '" + secret + "'\n",
		"wrong type":         "[provisioning]\nsource = 'dps'\n[provisioning.attestation]\nmethod = 'symmetric_key'\nsymmetric_key = { value = '" + secret + "' }\nregistration_id = 5\n",
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatal("Parse accepted the document")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
}
