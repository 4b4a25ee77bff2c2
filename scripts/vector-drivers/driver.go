// Sets keys through gomemcache (scripts/record-vectors.ts builds it in GOPATH mode against the
// Debian package golang-github-bradfitz-gomemcache-dev).
// stdin: {"servers": ["h:p", ...], "keys": [...]}; stdout: {"failed": n}
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/bradfitz/gomemcache/memcache"
)

func main() {
	var d struct {
		Servers []string `json:"servers"`
		Keys    []string `json:"keys"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&d); err != nil {
		panic(err)
	}
	c := memcache.New(d.Servers...)
	failed := 0
	for _, k := range d.Keys {
		if err := c.Set(&memcache.Item{Key: k, Value: []byte("1")}); err != nil {
			failed++
		}
	}
	fmt.Printf("{\"failed\": %d}\n", failed)
}
