// Microphone capture (16 kHz pcm16 blocks) and streamed playback of 24 kHz pcm16 deltas over WebAudio.

export const INPUT_RATE = 16000;
export const OUTPUT_RATE = 24000;

export function b64FromBytes(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function int16FromB64(data) {
  const raw = atob(data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new Int16Array(bytes.buffer, 0, bytes.length >> 1);
}

// The microphone (and optionally the camera): `onBlock(int16Buffer, rms)` gets 40 ms of 16 kHz mono audio.
export class Mic {
  constructor(onBlock) {
    this.onBlock = onBlock;
    this.stream = null;
    this.ctx = null;
  }

  async start({ camera = false } = {}) {
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 };
    const video = camera ? { width: 320, height: 240, frameRate: 10 } : false;
    this.stream = await navigator.mediaDevices.getUserMedia({ audio, video });
    try {
      this.ctx = new AudioContext({ sampleRate: INPUT_RATE }); // the browser resamples the mic for us
      await this.connect();
    } catch (err) {
      // some browsers refuse a mic source in a context at another rate: the worklet resamples instead
      console.warn("16 kHz capture context failed, resampling in the worklet:", err);
      if (this.ctx) await this.ctx.close();
      this.ctx = new AudioContext();
      await this.connect();
    }
    return this.stream;
  }

  async connect() {
    await this.ctx.audioWorklet.addModule(new URL("./worklet.js", import.meta.url));
    const src = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "vita-capture", { processorOptions: { block: 640 } });
    this.node.port.onmessage = (e) => this.onBlock(e.data.pcm, e.data.rms);
    const sink = this.ctx.createGain();
    sink.gain.value = 0; // keeps the graph pulled; plays nothing
    src.connect(this.node);
    this.node.connect(sink);
    sink.connect(this.ctx.destination);
    if (this.ctx.state === "suspended") await this.ctx.resume();
  }

  async stop() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) await this.ctx.close();
    this.stream = this.ctx = null;
  }
}

// Streamed playback: each delta is scheduled right after the previous one; `stop()` silences everything at once.
export class Player {
  constructor(onIdle, onStart = () => {}) {
    this.onIdle = onIdle; // called when the last scheduled chunk has finished playing
    this.onStart = onStart; // (responseId, performance.now() time): a response's first sample is being played
    this.ctx = null;
    this.sources = new Set();
    this.next = 0; // context time at which the next chunk starts
    this.active = null; // the response whose audio is playing (null once it is done and drained, or stopped)
    // responses: response id -> {scheduled, played, firstAt, lastAt (performance.now() times of scheduling),
    // startsAt (when its first sample plays), cutAt (when a stop cut its queued audio)}
    this.stats = {
      chunksReceived: 0, chunksScheduled: 0, chunksPlayed: 0, chunksStopped: 0, samplesScheduled: 0,
      secondsPlayed: 0, stops: 0, stoppedAt: null, stopReason: null, firstStartAt: null, lastStartAt: null,
      playing: false, responseId: null, responses: {},
    };
  }

  async ensure() {
    if (!this.ctx) this.ctx = new AudioContext();
    if (this.ctx.state === "suspended") await this.ctx.resume();
  }

  get playing() {
    return this.sources.size > 0;
  }

  // `pcm`: Int16Array at 24 kHz; `responseId`: the response it belongs to
  play(pcm, responseId) {
    const st = this.stats;
    st.chunksReceived++;
    if (!this.ctx || pcm.length === 0) return;
    const buf = this.ctx.createBuffer(1, pcm.length, OUTPUT_RATE);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.ctx.destination);
    const now = this.ctx.currentTime;
    const at = Math.max(this.next, now + 0.03); // a 30 ms cushion when the queue has run dry
    src.start(at);
    this.next = at + buf.duration;
    this.sources.add(src);
    const nowMs = performance.now();
    st.chunksScheduled++;
    st.samplesScheduled += pcm.length;
    st.firstStartAt = st.firstStartAt ?? nowMs;
    st.lastStartAt = nowMs;
    st.playing = true;
    st.responseId = responseId;
    this.active = responseId;
    const first = !(responseId in st.responses);
    const per = (st.responses[responseId] ??= { scheduled: 0, played: 0, firstAt: nowMs, lastAt: nowMs });
    per.scheduled++;
    per.lastAt = nowMs;
    if (first) {
      // context time -> performance.now() time, plus the output latency the browser reports (0 when unknown)
      const out = Number.isFinite(this.ctx.outputLatency) ? this.ctx.outputLatency : 0;
      per.startsAt = nowMs + (at - now + out) * 1000;
      setTimeout(() => {
        if (per.cutAt === undefined || per.cutAt > per.startsAt) this.onStart(responseId, per.startsAt);
      }, per.startsAt - nowMs);
    }
    src.onended = () => {
      this.sources.delete(src);
      st.chunksPlayed++;
      per.played++;
      st.secondsPlayed += buf.duration;
      if (this.sources.size === 0) {
        st.playing = false;
        this.onIdle(responseId);
      }
    };
  }

  // Stop at once: every scheduled chunk is cut (not counted as played); returns how many were cut. A stop is
  // recorded (stops, stoppedAt) when audio was queued or a response's audio was still in progress.
  stop(reason) {
    const cut = this.sources.size;
    const wasActive = cut > 0 || this.active !== null;
    this.active = null;
    for (const src of this.sources) {
      src.onended = null;
      try {
        src.stop();
      } catch (_) { /* not started yet */ }
      src.disconnect();
    }
    this.sources.clear();
    this.next = 0;
    const st = this.stats;
    const per = st.responses[st.responseId];
    if (per && cut > 0 && per.cutAt === undefined) per.cutAt = performance.now();
    st.chunksStopped += cut;
    if (wasActive) {
      st.stops++;
      st.stoppedAt = performance.now();
      st.stopReason = reason;
    }
    st.playing = false;
    return cut;
  }
}
