// The publisher: the camera (getUserMedia) or a shared tab or window (getDisplayMedia:
// a video call, to check the other party's face) sent to the service over WHIP (RFC
// 9725). POST the offer as application/sdp to /api/whip?name=..., apply the answer, and
// DELETE the Location it returns when publishing stops. The peer connection uses the
// STUN servers /api/webrtc/ice-servers names (never a TURN server: the service relays).
import { api, localPath, tokenForm } from "./common.js";

const ICE_GATHERING_TIMEOUT_MS = 5000;
const $ = (id) => document.getElementById(id);
let session = null;   // {pc, stream, location}

function setStatus(text, isError = false) {
  const status = $("publish-status");
  status.textContent = text;
  status.classList.toggle("error", isError);
  status.dataset.state = text;
}

function iceGatheringComplete(pc) {
  // No trickle ICE: WHIP here sends one offer with every candidate in it.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    window.setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);  // send what was gathered
  });
}

const SOURCES = {
  camera: {
    what: "the camera",
    method: "getUserMedia",
    constraints: { video: true, audio: false },
  },
  screen: {
    what: "a tab or window to share",
    method: "getDisplayMedia",
    // a call's faces are small: ask for the full picture, not the default 800 pixels
    constraints: {
      video: { width: { ideal: 1920 }, height: { ideal: 1080 }, frameRate: { ideal: 15 } },
      audio: false,
    },
  },
};

async function iceServers() {
  const response = await api("/api/webrtc/ice-servers");
  return (await response.json()).ice_servers;
}

async function start(event) {
  event.preventDefault();
  if (session) return;
  const source = SOURCES[new FormData($("publish-form")).get("source")] || SOURCES.camera;
  if (!navigator.mediaDevices || !navigator.mediaDevices[source.method]) {
    setStatus(`this browser gives no ${source === SOURCES.camera ? "camera" : "screen sharing"} ` +
      "here: open the page over https or on localhost", true);
    return;
  }
  const name = $("stream-name").value.trim();
  $("start").disabled = true;
  let stream = null;
  let pc = null;
  try {
    const servers = await iceServers();  // fails early on a missing token
    setStatus(`asking for ${source.what}…`);
    stream = await navigator.mediaDevices[source.method](source.constraints);
    $("preview").srcObject = stream;
    pc = new RTCPeerConnection({ iceServers: servers });
    for (const track of stream.getVideoTracks()) {
      // sharing stopped from the browser's own bar ends the session as Stop does
      track.addEventListener("ended", () => {
        if (session && session.stream === stream) stop("sharing ended");
      });
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    pc.addEventListener("connectionstatechange", () => {
      const state = pc.connectionState;
      if (state === "connected") setStatus("publishing");
      else if (state === "failed") setStatus("connection failed", true);
      else if (state !== "closed") setStatus(state);
    });
    setStatus("connecting…");
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const response = await api(`/api/whip?name=${encodeURIComponent(name)}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    const location = response.headers.get("Location");
    session = { pc, stream, location: location ? localPath(location) : null };
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    $("stop").disabled = false;
  } catch (error) {
    session = session || { pc, stream, location: null };
    await stop(`could not publish: ${error.message}`, true);
  }
}

async function stop(message = "stopped", isError = false) {
  const current = session;
  session = null;
  $("stop").disabled = true;
  $("start").disabled = false;
  if (!current) return;
  let failure = null;
  if (current.location) {
    // End the WHIP session first: once the peer connection closes, the service ends
    // the session by itself and the DELETE would find nothing (404).
    try {
      await api(current.location, { method: "DELETE" });
    } catch (error) {
      if (error.status !== 404) failure = error;
    }
  }
  if (current.pc) current.pc.close();
  if (current.stream) for (const track of current.stream.getTracks()) track.stop();
  $("preview").srcObject = null;
  if (failure) setStatus(`${message}; the service did not end the session: ${failure.message}`, true);
  else setStatus(message, isError);
}

tokenForm($("token-form"), $("token"), () => setStatus("token saved"));
$("publish-form").addEventListener("submit", start);
$("stop").addEventListener("click", () => stop());
// Leaving the page ends the session too (keepalive lets the DELETE outlive the page).
window.addEventListener("pagehide", () => {
  if (session && session.location) {
    api(session.location, { method: "DELETE", keepalive: true }).catch(() => {});
  }
});
