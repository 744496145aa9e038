// A plain (not TLS) listening socket for Poco's HTTPServer whose accepted connections wait with
// poll(2).
//
// Poco 1.11's Socket::poll makes an epoll set, adds the socket, waits and closes the set: four
// system calls, and an anonymous inode allocated and freed, where one poll(2) does. Its
// HTTPServer calls it once per request on every kept-alive connection, to wait for the next
// request; at a few thousand requests a second that churn was a visible share of the CPU of
// the coordinator's API and of every participant's callback server. A socket from
// NewPlainServerSocket hands out connections whose poll is one poll(2), with the same meaning
// (ready to read includes end of stream and errors; a timeout returns false; EINTR waits again
// for what is left). Everything else is Poco's.
//
// The SDK's callback server (endpoint.h) and the coordinator's API server use it; TLS listeners
// keep Poco's SecureServerSocket.
//
// Lives in the SDK, which every program links (like tls.h).
#pragma once

#include <Poco/Net/ServerSocket.h>

namespace txcoord::participant {

// An unbound ServerSocket: bind and listen as with a default-constructed Poco::Net::ServerSocket.
Poco::Net::ServerSocket NewPlainServerSocket();

}  // namespace txcoord::participant
