// A stand-in scoring backend for benchmarks/router. It shares a core with the load generator,
// so it must cost far less per request than the proxies it sits behind: it speaks just enough
// HTTP/1.1 by hand (keep-alive, Content-Length or chunked request bodies, HTTP/1.0 clients)
// instead of net/http, which costs several times more per request.
//
//	POST .../score  (non-empty body) -> 200 {"result": [0.5]}
//	POST .../score  (empty body)     -> 400, so a proxy that drops the body shows up as errors
//	GET  /stats                      -> 200 {"scored": N}, requests scored since start
//	GET  anything else               -> 200 (health)
//	anything else                    -> 404
//
// It prints the address it listens on as its first line of output.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"strconv"
	"sync/atomic"
)

var scored atomic.Int64

const answer = `{"result": [0.5]}`

var (
	scoreResponse = response(200, "application/json", answer, true)
	scoreClose    = response(200, "application/json", answer, false)
	emptyBody     = response(400, "text/plain", "empty request body\n", true)
	notFound      = response(404, "text/plain", "not found\n", true)
	healthy       = response(200, "text/plain", "", true)
	errMalformed  = errors.New("malformed request")
)

func response(code int, contentType, body string, keepAlive bool) []byte {
	connection := "keep-alive"
	if !keepAlive {
		connection = "close"
	}
	return []byte(fmt.Sprintf(
		"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s",
		code, statusText(code), contentType, len(body), connection, body))
}

func statusText(code int) string {
	return map[int]string{200: "OK", 400: "Bad Request", 404: "Not Found"}[code]
}

type request struct {
	method, path []byte
	bodyBytes    int64
	keepAlive    bool
}

// read reads one request, discarding its body, and reports its size.
func read(r *bufio.Reader) (*request, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	parts := bytes.Fields(line)
	if len(parts) != 3 || !bytes.HasPrefix(parts[2], []byte("HTTP/1.")) {
		return nil, errMalformed
	}
	req := &request{method: append([]byte(nil), parts[0]...), path: append([]byte(nil), parts[1]...)}
	req.keepAlive = parts[2][7] == '1'
	length, chunked := int64(0), false
	for {
		header, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		header = bytes.TrimRight(header, "\r\n")
		if len(header) == 0 {
			break
		}
		colon := bytes.IndexByte(header, ':')
		if colon < 0 {
			return nil, errMalformed
		}
		name, value := header[:colon], bytes.TrimSpace(header[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return nil, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				req.keepAlive = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				req.keepAlive = true
			}
		}
	}
	if !chunked {
		_, err := r.Discard(int(length))
		req.bodyBytes = length
		return req, err
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return nil, errMalformed
		}
		if size == 0 {
			for {
				trailer, err := r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(trailer, "\r\n")) == 0 {
					return req, nil
				}
			}
		}
		if _, err := r.Discard(int(size) + 2); err != nil {
			return nil, err
		}
		req.bodyBytes += size
	}
}

func serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 16<<10)
	for {
		req, err := read(r)
		if err != nil {
			return
		}
		var out []byte
		switch {
		case string(req.method) == "POST" && bytes.HasSuffix(req.path, []byte("/score")):
			if req.bodyBytes == 0 {
				out = emptyBody
			} else {
				scored.Add(1)
				out = scoreResponse
				if !req.keepAlive {
					out = scoreClose
				}
			}
		case string(req.method) == "GET" && string(req.path) == "/stats":
			body := fmt.Sprintf(`{"scored": %d}`, scored.Load())
			out = response(200, "application/json", body, req.keepAlive)
		case string(req.method) == "GET" || string(req.method) == "HEAD":
			out = healthy
		default:
			out = notFound
		}
		if _, err := conn.Write(out); err != nil || !req.keepAlive {
			return
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		conn.(*net.TCPConn).SetNoDelay(true)
		go serve(conn)
	}
}
