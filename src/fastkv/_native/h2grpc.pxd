# C-level declarations of the parts of libnghttp2 (Debian: libnghttp2-dev) that the gRPC server
# connection core in h2grpc.pyx uses, and the per-stream state it keeps in C.
from libc.stdint cimport int32_t, uint8_t, uint32_t

cdef extern from "nghttp2/nghttp2.h":
    ctypedef struct nghttp2_session
    ctypedef struct nghttp2_session_callbacks
    ctypedef struct nghttp2_option

    ctypedef struct nghttp2_frame_hd:
        size_t length
        int32_t stream_id
        uint8_t type
        uint8_t flags

    ctypedef struct nghttp2_headers:
        nghttp2_frame_hd hd
        int cat

    ctypedef struct nghttp2_rst_stream:
        nghttp2_frame_hd hd
        uint32_t error_code

    ctypedef union nghttp2_frame:
        nghttp2_frame_hd hd
        nghttp2_headers headers
        nghttp2_rst_stream rst_stream

    ctypedef struct nghttp2_nv:
        uint8_t *name
        uint8_t *value
        size_t namelen
        size_t valuelen
        uint8_t flags

    ctypedef union nghttp2_data_source:
        int fd
        void *ptr

    ctypedef ssize_t (*nghttp2_data_source_read_callback)(
        nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
        nghttp2_data_source *source, void *user_data)

    ctypedef struct nghttp2_data_provider:
        nghttp2_data_source source
        nghttp2_data_source_read_callback read_callback

    ctypedef struct nghttp2_settings_entry:
        int32_t settings_id
        uint32_t value

    ctypedef int (*nghttp2_on_begin_headers_callback)(nghttp2_session *, const nghttp2_frame *, void *)
    ctypedef int (*nghttp2_on_header_callback)(nghttp2_session *, const nghttp2_frame *, const uint8_t *, size_t,
                                               const uint8_t *, size_t, uint8_t, void *)
    ctypedef int (*nghttp2_on_frame_recv_callback)(nghttp2_session *, const nghttp2_frame *, void *)
    ctypedef int (*nghttp2_on_data_chunk_recv_callback)(nghttp2_session *, uint8_t, int32_t, const uint8_t *,
                                                        size_t, void *)
    ctypedef int (*nghttp2_on_stream_close_callback)(nghttp2_session *, int32_t, uint32_t, void *)

    enum:
        NGHTTP2_ERR_DEFERRED
        NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
        NGHTTP2_ERR_CALLBACK_FAILURE
        NGHTTP2_NV_FLAG_NONE
        NGHTTP2_FLAG_END_STREAM
        NGHTTP2_DATA
        NGHTTP2_HEADERS
        NGHTTP2_HCAT_REQUEST
        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        NGHTTP2_DATA_FLAG_EOF
        NGHTTP2_DATA_FLAG_NO_END_STREAM
        NGHTTP2_FLAG_NONE
        NGHTTP2_NO_ERROR
        NGHTTP2_PROTOCOL_ERROR
        NGHTTP2_INTERNAL_ERROR
        NGHTTP2_CANCEL

    int nghttp2_session_callbacks_new(nghttp2_session_callbacks **callbacks_ptr)
    void nghttp2_session_callbacks_del(nghttp2_session_callbacks *callbacks)
    void nghttp2_session_callbacks_set_on_begin_headers_callback(nghttp2_session_callbacks *,
                                                                 nghttp2_on_begin_headers_callback)
    void nghttp2_session_callbacks_set_on_header_callback(nghttp2_session_callbacks *, nghttp2_on_header_callback)
    void nghttp2_session_callbacks_set_on_frame_recv_callback(nghttp2_session_callbacks *,
                                                              nghttp2_on_frame_recv_callback)
    void nghttp2_session_callbacks_set_on_data_chunk_recv_callback(nghttp2_session_callbacks *,
                                                                   nghttp2_on_data_chunk_recv_callback)
    void nghttp2_session_callbacks_set_on_stream_close_callback(nghttp2_session_callbacks *,
                                                                nghttp2_on_stream_close_callback)

    int nghttp2_option_new(nghttp2_option **option_ptr)
    void nghttp2_option_del(nghttp2_option *option)
    void nghttp2_option_set_stream_reset_rate_limit(nghttp2_option *option, unsigned long long burst,
                                                    unsigned long long rate)
    void nghttp2_option_set_max_outbound_ack(nghttp2_option *option, size_t val)
    void nghttp2_option_set_max_settings(nghttp2_option *option, size_t val)
    void nghttp2_option_set_no_http_messaging(nghttp2_option *option, int val)

    int nghttp2_session_server_new2(nghttp2_session **session_ptr, const nghttp2_session_callbacks *callbacks,
                                    void *user_data, const nghttp2_option *option)
    void nghttp2_session_del(nghttp2_session *session)
    ssize_t nghttp2_session_mem_recv(nghttp2_session *session, const uint8_t *data, size_t datalen)
    ssize_t nghttp2_session_mem_send(nghttp2_session *session, const uint8_t **data_ptr)
    int nghttp2_session_want_read(nghttp2_session *session)
    int nghttp2_session_want_write(nghttp2_session *session)
    void *nghttp2_session_get_stream_user_data(nghttp2_session *session, int32_t stream_id)
    int nghttp2_session_set_stream_user_data(nghttp2_session *session, int32_t stream_id, void *stream_user_data)
    int nghttp2_session_resume_data(nghttp2_session *session, int32_t stream_id)
    int nghttp2_session_set_local_window_size(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                                              int32_t window_size)
    int32_t nghttp2_session_get_last_proc_stream_id(nghttp2_session *session)
    int nghttp2_submit_settings(nghttp2_session *session, uint8_t flags, const nghttp2_settings_entry *iv,
                                size_t niv)
    int nghttp2_submit_response(nghttp2_session *session, int32_t stream_id, const nghttp2_nv *nva, size_t nvlen,
                                const nghttp2_data_provider *data_prd)
    int nghttp2_submit_trailer(nghttp2_session *session, int32_t stream_id, const nghttp2_nv *nva, size_t nvlen)
    int nghttp2_submit_rst_stream(nghttp2_session *session, uint8_t flags, int32_t stream_id, uint32_t error_code)
    int nghttp2_submit_shutdown_notice(nghttp2_session *session)
    int nghttp2_submit_goaway(nghttp2_session *session, uint8_t flags, int32_t last_stream_id, uint32_t error_code,
                              const uint8_t *opaque_data, size_t opaque_data_len)
    const char *nghttp2_strerror(int lib_error_code)


# One gRPC call's state, owned by the session (its stream user data) and freed when the stream closes.
ctypedef struct GrpcStream:
    int32_t id
    int method            # index the front end gave the :path; -1 unknown
    int streaming         # 1: events per message; 0: unary, the one message is held until END_STREAM
    double timeout        # seconds from grpc-timeout; 0 = none
    size_t header_bytes   # received header block size (name + value + 32 per field, as HPACK counts)
    int reported          # the front end has been told of this call (EV_UNARY or EV_OPEN)
    int discard           # answered early (error): received data is dropped
    int remote_closed     # the client has half-closed
    int done              # the server has ended the call (trailers submitted)
    # who makes the call: the first non-empty `token` / `authorization` header values (NULL: absent)
    char *token
    size_t token_len
    char *authorization
    size_t authorization_len
    # inbound gRPC message framing: 1 byte flag + 4 bytes length, then the message
    unsigned char prefix[5]
    size_t prefix_have
    unsigned char *msg
    size_t msg_len
    size_t msg_have
    int in_msg
    int nmsg
    # outbound framed messages not yet taken by nghttp2
    unsigned char *out
    size_t out_start
    size_t out_end
    size_t out_cap
    int resp_started      # response headers submitted with a data provider
    int deferred          # the data provider returned DEFERRED; resume when data or trailers come
    int trailers_ready
    int status
    char *status_msg
    size_t status_msg_len
    GrpcStream *prev
    GrpcStream *next
