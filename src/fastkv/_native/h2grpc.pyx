# distutils: libraries = nghttp2
# distutils: extra_compile_args = -O3
# fastkv: needs-header nghttp2/nghttp2.h from libnghttp2-dev
"""The gRPC server side of one HTTP/2 connection, over libnghttp2 (framing, HPACK, flow control).

Sans-I/O: the front end feeds received bytes to `receive()`, which returns the calls and messages
they completed as a list of events, and takes what to write from `data_to_send()` once per batch.
Per-stream state (method, grpc-timeout, the 5-byte gRPC message framing, queued response bytes)
lives in C (GrpcStream in h2grpc.pxd). The pure-Python twin is h2grpc_py.py (over the `h2` package).

Events are 6-tuples (kind, stream id, method, value, message, credentials):
  EV_UNARY       a unary call arrived whole: value = timeout in seconds (0 = none), message = bytes
  EV_OPEN        a streaming call opened: value = timeout
  EV_MESSAGE     a streaming call's request message (bytes)
  EV_HALF_CLOSE  the client of a streaming call sent its last message
  EV_CLOSED      a call the front end knows of ended before the server finished it (client reset,
                 connection failure): value = HTTP/2 error code. The front end drops the call.
`credentials` rides on EV_UNARY and EV_OPEN (None on the others): who makes the call, as the request
headers say it, for the front end's auth (etcd's `token` metadata; `authorization` as etcd also
accepts): None when the call has neither header (the common, unauthenticated case costs nothing
more), else (token, authorization), each the first non-empty value as bytes, or None.
`methods` maps a :path (bytes) to (method index, streaming?). The core answers by itself, with the
gRPC status and text grpc-go uses: an unknown path (UNIMPLEMENTED), a message over the size limit
(RESOURCE_EXHAUSTED), a unary call with other than one request message (INTERNAL), a request that
is not gRPC (INTERNAL).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, malloc, realloc, calloc
from libc.string cimport memcmp, memcpy, memmove
from libc.stdint cimport int32_t, uint8_t, uint32_t

EV_UNARY = 1
EV_OPEN = 2
EV_MESSAGE = 3
EV_HALF_CLOSE = 4
EV_CLOSED = 5

cdef enum:
    _EV_UNARY = 1
    _EV_OPEN = 2
    _EV_MESSAGE = 3
    _EV_HALF_CLOSE = 4
    _EV_CLOSED = 5

# gRPC status codes the core itself answers with
cdef enum:
    ST_INTERNAL = 13
    ST_UNIMPLEMENTED = 12
    ST_RESOURCE_EXHAUSTED = 8

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
# nghttp2's answer to rapid resets (CVE-2023-44487): after this burst, this many resets a second
RESET_BURST = 1000
RESET_RATE = 33


cdef inline ServerConnection _conn(void *user_data):
    return <ServerConnection>user_data


cdef int _on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0
    cdef ServerConnection c = _conn(user_data)
    cdef GrpcStream *s = <GrpcStream *>calloc(1, sizeof(GrpcStream))
    if s == NULL:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    s.id = frame.hd.stream_id
    s.method = -2  # no :path yet
    s.next = c.streams
    if c.streams != NULL:
        c.streams.prev = s
    c.streams = s
    nghttp2_session_set_stream_user_data(session, s.id, s)
    return 0


cdef double _parse_timeout(const uint8_t *v, size_t n) noexcept:
    # grpc-timeout: 1-8 ASCII digits and a unit (H M S m u n); anything else means no deadline
    cdef double amount = 0
    cdef size_t i
    if n < 2 or n > 9:
        return 0
    for i in range(n - 1):
        if v[i] < 48 or v[i] > 57:
            return 0
        amount = amount * 10 + (v[i] - 48)
    cdef uint8_t unit = v[n - 1]
    if unit == b'H':
        return amount * 3600
    if unit == b'M':
        return amount * 60
    if unit == b'S':
        return amount
    if unit == b'm':
        return amount / 1e3
    if unit == b'u':
        return amount / 1e6
    if unit == b'n':
        return amount / 1e9
    return 0


cdef int _on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) noexcept:
    if frame.hd.type != NGHTTP2_HEADERS:
        return 0
    cdef GrpcStream *s = <GrpcStream *>nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if s == NULL:
        return 0
    cdef ServerConnection c = _conn(user_data)
    s.header_bytes += namelen + valuelen + 32
    if s.header_bytes > c.max_header_bytes:
        # resets the stream (INTERNAL_ERROR); the connection and other calls go on
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    if frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0  # trailers from a client carry nothing we use
    if namelen == 5 and memcmp(name, b":path", 5) == 0:
        try:
            entry = c.methods.get(PyBytes_FromStringAndSize(<const char *>value, valuelen))
        except BaseException:
            return NGHTTP2_ERR_CALLBACK_FAILURE
        if entry is None:
            s.method = -1
        else:
            s.method = entry[0]
            s.streaming = 1 if entry[1] else 0
    elif namelen == 12 and memcmp(name, b"grpc-timeout", 12) == 0:
        s.timeout = _parse_timeout(value, valuelen)
    elif namelen == 5 and valuelen and s.token == NULL and memcmp(name, b"token", 5) == 0:
        s.token = _copy(value, valuelen)
        if s.token == NULL:
            return NGHTTP2_ERR_CALLBACK_FAILURE
        s.token_len = valuelen
    elif namelen == 13 and valuelen and s.authorization == NULL and memcmp(name, b"authorization", 13) == 0:
        s.authorization = _copy(value, valuelen)
        if s.authorization == NULL:
            return NGHTTP2_ERR_CALLBACK_FAILURE
        s.authorization_len = valuelen
    return 0


cdef char *_copy(const uint8_t *value, size_t n) noexcept:
    cdef char *p = <char *>malloc(n)
    if p != NULL:
        memcpy(p, value, n)
    return p


cdef object _credentials(GrpcStream *s):
    # the header values are bounded by max_header_bytes, as the whole header block is
    if s.token == NULL and s.authorization == NULL:
        return None
    return (PyBytes_FromStringAndSize(s.token, s.token_len) if s.token != NULL else None,
            PyBytes_FromStringAndSize(s.authorization, s.authorization_len) if s.authorization != NULL else None)


cdef int _on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef int32_t sid = frame.hd.stream_id
    if sid == 0 or (frame.hd.type != NGHTTP2_HEADERS and frame.hd.type != NGHTTP2_DATA):
        return 0
    cdef GrpcStream *s = <GrpcStream *>nghttp2_session_get_stream_user_data(session, sid)
    if s == NULL:
        return 0
    cdef ServerConnection c = _conn(user_data)
    try:
        if frame.hd.type == NGHTTP2_HEADERS and frame.headers.cat == NGHTTP2_HCAT_REQUEST:
            if s.method == -2:
                c._fail_call(s, ST_INTERNAL, b"malformed gRPC request: no :path")
            elif s.method == -1:
                c._fail_call(s, ST_UNIMPLEMENTED, b"unknown method")
            elif s.streaming:
                s.reported = 1
                c.events.append((_EV_OPEN, sid, s.method, s.timeout, None, _credentials(s)))
        if frame.hd.flags & NGHTTP2_FLAG_END_STREAM:
            s.remote_closed = 1
            if s.discard:
                return 0
            if s.in_msg or s.prefix_have:
                c._fail_call(s, ST_INTERNAL, b"grpc: request ended inside a message")
            elif s.streaming:
                c.events.append((_EV_HALF_CLOSE, sid, s.method, 0, None, None))
            elif s.nmsg != 1:
                c._fail_call(s, ST_INTERNAL,
                             b"grpc: a unary call needs exactly one request message, got %d" % s.nmsg)
            else:
                s.reported = 1
                msg = PyBytes_FromStringAndSize(<const char *>s.msg, s.msg_len) if s.msg_len else b""
                free(s.msg)
                s.msg = NULL
                c.events.append((_EV_UNARY, sid, s.method, s.timeout, msg, _credentials(s)))
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t sid, const uint8_t *data, size_t n,
                        void *user_data) noexcept:
    cdef GrpcStream *s = <GrpcStream *>nghttp2_session_get_stream_user_data(session, sid)
    if s == NULL or s.discard:
        return 0
    cdef ServerConnection c = _conn(user_data)
    cdef size_t take, length
    try:
        while n:
            if not s.in_msg:
                take = 5 - s.prefix_have
                if take > n:
                    take = n
                memcpy(s.prefix + s.prefix_have, data, take)
                s.prefix_have += take
                data += take
                n -= take
                if s.prefix_have < 5:
                    return 0
                s.prefix_have = 0
                if s.prefix[0] != 0:
                    c._fail_call(s, ST_INTERNAL, b"grpc: compressed messages are not supported")
                    return 0
                length = (<size_t>s.prefix[1] << 24) | (<size_t>s.prefix[2] << 16) | (<size_t>s.prefix[3] << 8) \
                    | s.prefix[4]
                if length > c.max_message_bytes:
                    c._fail_call(s, ST_RESOURCE_EXHAUSTED, b"grpc: received message larger than max (%d vs. %d)"
                                 % (length, c.max_message_bytes))
                    return 0
                s.nmsg += 1
                if not s.streaming and s.nmsg > 1:
                    c._fail_call(s, ST_INTERNAL,
                                 b"grpc: a unary call needs exactly one request message, got more")
                    return 0
                free(s.msg)
                s.msg = <unsigned char *>malloc(length if length else 1)
                if s.msg == NULL:
                    return NGHTTP2_ERR_CALLBACK_FAILURE
                s.msg_len = length
                s.msg_have = 0
                s.in_msg = 1
            take = s.msg_len - s.msg_have
            if take > n:
                take = n
            memcpy(s.msg + s.msg_have, data, take)
            s.msg_have += take
            data += take
            n -= take
            if s.msg_have == s.msg_len:
                s.in_msg = 0
                if s.streaming:
                    msg = PyBytes_FromStringAndSize(<const char *>s.msg, s.msg_len)
                    free(s.msg)
                    s.msg = NULL
                    c.events.append((_EV_MESSAGE, sid, s.method, 0, msg, None))
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_stream_close(nghttp2_session *session, int32_t sid, uint32_t error_code, void *user_data) noexcept:
    cdef GrpcStream *s = <GrpcStream *>nghttp2_session_get_stream_user_data(session, sid)
    if s == NULL:
        return 0
    cdef ServerConnection c = _conn(user_data)
    if s.reported and not s.done:
        try:
            c.events.append((_EV_CLOSED, sid, s.method, error_code, None, None))
        except BaseException:
            pass
    nghttp2_session_set_stream_user_data(session, sid, NULL)
    c._unlink(s)
    return 0


cdef ssize_t _read_data(nghttp2_session *session, int32_t sid, uint8_t *buf, size_t length, uint32_t *data_flags,
                        nghttp2_data_source *source, void *user_data) noexcept:
    cdef GrpcStream *s = <GrpcStream *>nghttp2_session_get_stream_user_data(session, sid)
    if s == NULL:
        data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
        return 0
    cdef size_t avail = s.out_end - s.out_start
    if avail:
        if avail > length:
            avail = length
        memcpy(buf, s.out + s.out_start, avail)
        s.out_start += avail
        if s.out_start == s.out_end:
            s.out_start = s.out_end = 0
        if s.out_start != s.out_end or not s.trailers_ready:
            return <ssize_t>avail
    if not s.trailers_ready:
        s.deferred = 1
        return NGHTTP2_ERR_DEFERRED
    # everything queued is out: end with trailers (END_STREAM rides on them, not on DATA)
    data_flags[0] |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM
    if _submit_trailers(session, s) != 0:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return <ssize_t>avail


cdef inline void _nv(nghttp2_nv *nv, const char *name, size_t namelen, const char *value, size_t valuelen) noexcept:
    nv.name = <uint8_t *>name
    nv.namelen = namelen
    nv.value = <uint8_t *>value
    nv.valuelen = valuelen
    nv.flags = NGHTTP2_NV_FLAG_NONE


cdef int _submit_trailers(nghttp2_session *session, GrpcStream *s) noexcept:
    cdef nghttp2_nv nva[2]
    cdef char code[12]
    cdef int n = _status_text(s.status, code)
    _nv(&nva[0], "grpc-status", 11, code, n)
    cdef size_t nnv = 1
    if s.status_msg_len:
        _nv(&nva[1], "grpc-message", 12, s.status_msg, s.status_msg_len)
        nnv = 2
    return nghttp2_submit_trailer(session, s.id, nva, nnv)


cdef int _status_text(int status, char *out) noexcept:
    # status is 0..16: at most two digits
    if status >= 10:
        out[0] = <char>(48 + status // 10)
        out[1] = <char>(48 + status % 10)
        return 2
    out[0] = <char>(48 + status)
    return 1


cdef bytes _percent_encode(bytes message):
    # grpc-message is percent-encoded UTF-8: bytes outside printable ASCII, and '%', as %XX
    cdef bytearray out = bytearray()
    cdef unsigned char ch
    for ch in message:
        if ch < 0x20 or ch > 0x7E or ch == 0x25:
            out += b"%%%02X" % ch
        else:
            out.append(ch)
    return bytes(out)


cdef nghttp2_nv _STATUS_200
cdef nghttp2_nv _CONTENT_TYPE
_nv(&_STATUS_200, ":status", 7, "200", 3)
_nv(&_CONTENT_TYPE, "content-type", 12, "application/grpc", 16)


cdef class ServerConnection:
    cdef nghttp2_session *session
    cdef GrpcStream *streams
    cdef public list events
    cdef dict methods
    cdef size_t max_message_bytes
    cdef size_t max_header_bytes
    cdef public object failure  # None, or why nghttp2 gave up on the connection
    cdef bint goaway_sent

    def __cinit__(self, dict methods, size_t max_message_bytes, unsigned int max_concurrent_streams=0xFFFFFFFF,
                  size_t max_header_bytes=DEFAULT_MAX_HEADER_BYTES):
        self.methods = methods
        self.max_message_bytes = max_message_bytes
        self.max_header_bytes = max_header_bytes
        self.events = []
        self.failure = None
        cdef nghttp2_session_callbacks *cbs
        cdef nghttp2_option *opt
        if nghttp2_session_callbacks_new(&cbs) != 0:
            raise MemoryError()
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, _on_begin_headers)
        nghttp2_session_callbacks_set_on_header_callback(cbs, _on_header)
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, _on_frame_recv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, _on_data_chunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, _on_stream_close)
        if nghttp2_option_new(&opt) != 0:
            nghttp2_session_callbacks_del(cbs)
            raise MemoryError()
        nghttp2_option_set_stream_reset_rate_limit(opt, RESET_BURST, RESET_RATE)
        # nghttp2's HTTP semantics checks would reset calls that grpc-go and grpcio accept: etcd 3.4's
        # clients send `:authority: http://host:port` for endpoints given with a scheme. The gRPC
        # rules that matter (:path, message framing, END_STREAM) are checked here instead.
        nghttp2_option_set_no_http_messaging(opt, 1)
        cdef int rv = nghttp2_session_server_new2(&self.session, cbs, <void *>self, opt)
        nghttp2_option_del(opt)
        nghttp2_session_callbacks_del(cbs)
        if rv != 0:
            raise MemoryError()
        cdef nghttp2_settings_entry iv[3]
        iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        iv[0].value = max_concurrent_streams
        iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[1].value = DEFAULT_WINDOW
        iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[2].value = max_header_bytes
        nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 3)
        nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0, CONNECTION_WINDOW)

    def __dealloc__(self):
        cdef GrpcStream *s = self.streams
        cdef GrpcStream *nxt
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        while s != NULL:
            nxt = s.next
            _free_stream(s)
            s = nxt
        self.streams = NULL

    cdef void _unlink(self, GrpcStream *s) noexcept:
        if s.prev != NULL:
            s.prev.next = s.next
        else:
            self.streams = s.next
        if s.next != NULL:
            s.next.prev = s.prev
        _free_stream(s)

    cdef int _fail_call(self, GrpcStream *s, int status, bytes message) except -1:
        """Answer the call with an error at once and drop whatever else it sends."""
        s.discard = 1
        free(s.msg)
        s.msg = NULL
        s.in_msg = 0
        if s.reported:
            self.events.append((_EV_CLOSED, s.id, s.method, 0, None, None))
        self._finish(s, status, message)
        return 0

    cdef int _finish(self, GrpcStream *s, int status, bytes message) except -1:
        cdef nghttp2_nv nva[4]
        cdef char code[12]
        cdef int n
        cdef bytes text = _percent_encode(message) if message else b""
        if s.done:
            return 0
        s.done = 1
        s.status = status
        if not s.resp_started:
            # trailers-only: one HEADERS frame with END_STREAM
            n = _status_text(status, code)
            nva[0] = _STATUS_200
            nva[1] = _CONTENT_TYPE
            _nv(&nva[2], "grpc-status", 11, code, n)
            if text:
                _nv(&nva[3], "grpc-message", 12, text, len(text))
            nghttp2_submit_response(self.session, s.id, nva, 4 if text else 3, NULL)
            return 0
        if text:
            s.status_msg = <char *>malloc(len(text))
            if s.status_msg == NULL:
                raise MemoryError()
            memcpy(s.status_msg, <const char *>text, len(text))
            s.status_msg_len = len(text)
        s.trailers_ready = 1
        if s.deferred:
            s.deferred = 0
            nghttp2_session_resume_data(self.session, s.id)
        return 0

    cdef GrpcStream *_stream(self, int32_t sid):
        if self.session == NULL:
            return NULL
        return <GrpcStream *>nghttp2_session_get_stream_user_data(self.session, sid)

    cdef int _append(self, GrpcStream *s, const unsigned char *payload, size_t n) except -1:
        cdef size_t need = s.out_end + 5 + n
        cdef unsigned char *p
        if need > s.out_cap:
            if s.out_start:
                memmove(s.out, s.out + s.out_start, s.out_end - s.out_start)
                s.out_end -= s.out_start
                s.out_start = 0
                need = s.out_end + 5 + n
            if need > s.out_cap:
                p = <unsigned char *>realloc(s.out, need * 2 if need < (1 << 20) else need + (need >> 2))
                if p == NULL:
                    raise MemoryError()
                s.out = p
                s.out_cap = need * 2 if need < (1 << 20) else need + (need >> 2)
        p = s.out + s.out_end
        p[0] = 0
        p[1] = (n >> 24) & 0xFF
        p[2] = (n >> 16) & 0xFF
        p[3] = (n >> 8) & 0xFF
        p[4] = n & 0xFF
        if n:
            memcpy(p + 5, payload, n)
        s.out_end += 5 + n
        return 0

    cdef int _start_response(self, GrpcStream *s) except -1:
        cdef nghttp2_nv nva[2]
        cdef nghttp2_data_provider prd
        if s.resp_started:
            return 0
        s.resp_started = 1
        nva[0] = _STATUS_200
        nva[1] = _CONTENT_TYPE
        prd.source.ptr = NULL
        prd.read_callback = _read_data
        nghttp2_submit_response(self.session, s.id, nva, 2, &prd)
        return 0

    # --- input ----------------------------------------------------------------------------------
    def receive(self, data):
        """Feed received bytes; returns the events they completed (and clears the list)."""
        cdef const unsigned char[::1] view = data
        cdef ssize_t rv
        if self.session == NULL or self.failure is not None:
            return []
        if view.shape[0]:
            rv = nghttp2_session_mem_recv(self.session, &view[0], view.shape[0])
            if rv < 0:
                self.failure = nghttp2_strerror(<int>rv).decode()
        events = self.events
        self.events = []
        return events

    # --- output ---------------------------------------------------------------------------------
    def send_unary(self, int32_t sid, payload):
        """Answer a unary call: headers, the message, trailers with grpc-status 0. False if the
        call is gone (client reset)."""
        cdef const unsigned char[::1] view = payload
        cdef GrpcStream *s = self._stream(sid)
        if s == NULL or s.done:
            return False
        self._append(s, &view[0] if view.shape[0] else NULL, view.shape[0])
        self._start_response(s)
        self._finish(s, 0, None)
        return True

    def send_headers(self, int32_t sid):
        """Open a streaming response (messages follow with send_message)."""
        cdef GrpcStream *s = self._stream(sid)
        if s == NULL or s.done:
            return False
        self._start_response(s)
        return True

    def send_message(self, int32_t sid, payload):
        cdef const unsigned char[::1] view = payload
        cdef GrpcStream *s = self._stream(sid)
        if s == NULL or s.done:
            return False
        self._append(s, &view[0] if view.shape[0] else NULL, view.shape[0])
        self._start_response(s)
        if s.deferred:
            s.deferred = 0
            nghttp2_session_resume_data(self.session, sid)
        return True

    def send_status(self, int32_t sid, int status, message=b""):
        """End a call with grpc-status (and grpc-message): trailers-only if nothing was sent yet."""
        cdef GrpcStream *s = self._stream(sid)
        if s == NULL or s.done:
            return False
        if isinstance(message, str):
            message = message.encode()
        self._finish(s, status, message)
        return True

    def reset_stream(self, int32_t sid, uint32_t error_code=NGHTTP2_CANCEL):
        cdef GrpcStream *s = self._stream(sid)
        if s == NULL:
            return False
        s.done = 1
        nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, sid, error_code)
        return True

    def buffered(self, int32_t sid):
        """Response bytes of stream `sid` waiting for the client's flow-control window (-1: gone)."""
        cdef GrpcStream *s = self._stream(sid)
        if s == NULL:
            return -1
        return s.out_end - s.out_start

    def data_to_send(self):
        """Everything nghttp2 has to write now, as one bytes object (b"" if nothing)."""
        cdef const uint8_t *p
        cdef ssize_t n
        if self.session == NULL:
            return b""
        n = nghttp2_session_mem_send(self.session, &p)
        if n <= 0:
            if n < 0 and self.failure is None:
                self.failure = nghttp2_strerror(<int>n).decode()
            return b""
        first = PyBytes_FromStringAndSize(<const char *>p, n)
        n = nghttp2_session_mem_send(self.session, &p)
        if n <= 0:
            return first
        parts = [first]
        while n > 0:
            parts.append(PyBytes_FromStringAndSize(<const char *>p, n))
            n = nghttp2_session_mem_send(self.session, &p)
        return b"".join(parts)

    # --- lifecycle ------------------------------------------------------------------------------
    def shutdown_notice(self):
        """First half of a graceful shutdown: GOAWAY with the highest stream id, so the client
        opens no new calls while the ones in flight finish."""
        if self.session != NULL:
            nghttp2_submit_shutdown_notice(self.session)

    def goaway(self, uint32_t error_code=NGHTTP2_NO_ERROR):
        """GOAWAY with the last stream id processed; the connection ends once it is written."""
        if self.session != NULL and not self.goaway_sent:
            self.goaway_sent = True
            nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(self.session), error_code, NULL, 0)

    def want_close(self):
        """True when the session is over (GOAWAY exchanged or a fatal error) and nothing is left
        to write: the front end closes the transport."""
        if self.session == NULL:
            return True
        return not nghttp2_session_want_read(self.session) and not nghttp2_session_want_write(self.session)

    def open_streams(self):
        cdef int n = 0
        cdef GrpcStream *s = self.streams
        while s != NULL:
            n += 1
            s = s.next
        return n


cdef void _free_stream(GrpcStream *s) noexcept:
    free(s.msg)
    free(s.out)
    free(s.status_msg)
    free(s.token)
    free(s.authorization)
    free(s)
