# Dataset source mixes of the shipped models (sourced by train_shipped.sh and build_bench_val.sh).
DEFAULT_SRC='cells(n_objects=[1,6]):0.3,rbc(n_objects=[1,8]):0.15,bacteria(n_objects=[2,12]):0.12,beads(n_objects=[1,4]):0.08,blobs(n_objects=[1,5]):0.1,textures:0.1,skimage-train:0.15'
PAPER_SRC='skimage-train:0.75,textures(opd_max_um=[0.15,0.32]):0.25'
# MIX_default=dl (stage v5 on): the same mix plus dead-leaves scenes, endless picture-like phase maps that
# keep the net from learning the 17 training pictures by heart (validation: data/natural-val).
DEFAULT_DL_SRC="$DEFAULT_SRC,deadleaves:0.15"
