// Command supervisor is the container test's stand-in for the part of the
// Home Assistant Supervisor that the add-on calls: Home Assistant's REST API
// behind http://supervisor/core/api (states and events), the MQTT service
// (services: mqtt:want; offered only with -mqtt), and the add-on's own info
// (the ingress port it assigned, as config.yaml's ingress_port: 0 asks), authorised by
// the SUPERVISOR_TOKEN the Supervisor gives the add-on. It records every request, one line each, for
// the test to read: "METHOD PATH auth=ok|bad BODY".
//
// The test also uses it to hold a port that the add-on then cannot bind.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:80", "listen address")
	token := flag.String("token", "", "the SUPERVISOR_TOKEN the add-on must send")
	record := flag.String("record", "", "file the requests are appended to")
	addrFile := flag.String("addr-file", "", "file the bound address is written to once listening")
	ingressPort := flag.Int("ingress-port", 63403, "the ingress port GET /addons/self/info reports")
	mqttAddr := flag.String("mqtt", "", "host:port of the MQTT broker GET /services/mqtt offers (none without)")
	mqttUser := flag.String("mqtt-user", "", "the broker's user name")
	mqttPassword := flag.String("mqtt-password", "", "the broker's password")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	var out io.Writer = io.Discard
	if *record != "" {
		f, err := os.OpenFile(*record, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	seen := map[string]bool{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		auth := "bad"
		if *token != "" && r.Header.Get("Authorization") == "Bearer "+*token {
			auth = "ok"
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%s %s auth=%s %s\n", r.Method, r.URL.Path, auth, strings.TrimSpace(string(body)))
		switch {
		case auth != "ok":
			http.Error(w, `{"message":"Unauthorized"}`, http.StatusUnauthorized)
		case r.Method == http.MethodGet && r.URL.Path == "/addons/self/info":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"result":"ok","data":{"slug":"local_qnetd","ingress":true,"ingress_port":%d,"ingress_entry":"/api/hassio_ingress/test"}}`, *ingressPort)
		case r.Method == http.MethodGet && r.URL.Path == "/services/mqtt":
			host, port, err := net.SplitHostPort(*mqttAddr)
			w.Header().Set("Content-Type", "application/json")
			if err != nil {
				// what the Supervisor answers when no broker add-on runs
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"result":"error","message":"No mqtt service available"}`)
				return
			}
			fmt.Fprintf(w, `{"result":"ok","data":{"host":%q,"port":%s,"ssl":false,"protocol":"3.1.1","username":%q,"password":%q}}`,
				host, port, *mqttUser, *mqttPassword)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/core/api/events/"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"message":"Event %s fired."}`, strings.TrimPrefix(r.URL.Path, "/core/api/events/"))
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/core/api/states/"):
			// Home Assistant answers 201 when it creates the entity, 200
			// when it updates one.
			w.Header().Set("Content-Type", "application/json")
			if !seen[r.URL.Path] {
				seen[r.URL.Path] = true
				w.WriteHeader(http.StatusCreated)
			}
			_, _ = w.Write(body)
		default:
			http.NotFound(w, r)
		}
	})
	if *addrFile != "" {
		// written whole, then renamed: a reader never sees half of it
		if err := os.WriteFile(*addrFile+".tmp", []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(http.Serve(ln, h))
}
