package dev.tidepool.tez;

import org.apache.tez.dag.api.UserPayload;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/** Processor payloads are UTF-8 text (JSON). */
final class Payloads {
  private Payloads() {
  }

  static UserPayload of(String text) {
    return UserPayload.create(ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8)));
  }

  static String text(UserPayload payload) {
    if (payload == null || !payload.hasPayload()) {
      return "";
    }
    ByteBuffer b = payload.getPayload().duplicate();
    byte[] bytes = new byte[b.remaining()];
    b.get(bytes);
    return new String(bytes, StandardCharsets.UTF_8);
  }
}
